// Manifest: atomic locked updates from concurrent processes, verification, lineage.
#include <sys/wait.h>
#include <unistd.h>

#include "core/checksum.hpp"
#include "core/fs.hpp"
#include "core/error.hpp"
#include "core/manifest.hpp"
#include "../test_util.hpp"

using namespace mcm;
using manifest::json;

TEST(Manifest, ConcurrentProcessesNeverLoseARecord) {
  auto d = test::scratch();
  manifest::Manifest m(d);
  std::string id = m.begin_record("prep", json::object());
  const int procs = 4, each = 25;
  std::vector<pid_t> kids;
  for (int p = 0; p < procs; ++p) {
    pid_t pid = fork();
    if (pid == 0) {
      try {
        manifest::Manifest mm(d);
        for (int i = 0; i < each; ++i) mm.add_output(id, json{{"path", cat("f", p, "-", i)}});
      } catch (...) { _exit(1); }
      _exit(0);
    }
    kids.push_back(pid);
  }
  for (pid_t k : kids) {
    int st = 0;
    waitpid(k, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  auto doc = m.read();
  EXPECT_EQ((*manifest::find_record(doc, id))["outputs"].size(), static_cast<size_t>(procs * each));
  for (auto& e : std::filesystem::directory_iterator(d))
    EXPECT_NE(e.path().extension(), ".tmp") << e.path();  // no temp left behind
}

TEST(Manifest, VerifyDetectsChangedMissingAndUnfinished) {
  auto d = test::scratch();
  test::write_text(d / "a.bin", "hello");
  test::write_text(d / "b.bin", "world");
  manifest::Manifest m(d);
  std::string id = m.begin_record("synth", json::object());
  m.add_output(id, manifest::file_entry(d, d / "a.bin"));
  m.add_output(id, manifest::file_entry(d, d / "b.bin"));
  auto problems = manifest::verify(d);
  ASSERT_EQ(problems.size(), 1u);  // still running
  EXPECT_NE(problems[0].find("status \"running\""), std::string::npos);
  m.patch_record(id, {{"status", "failed"}, {"errors", {"rank 1: shard x.tar: not a tar archive"}}});
  problems = manifest::verify(d);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("not a tar archive"), std::string::npos) << problems[0];
  m.patch_record(id, {{"status", "complete"}});
  EXPECT_TRUE(manifest::verify(d).empty());
  test::write_text(d / "a.bin", "hellO");
  std::filesystem::remove(d / "b.bin");
  problems = manifest::verify(d);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_NE(problems[0].find("a.bin: checksum"), std::string::npos);
  EXPECT_NE(problems[1].find("b.bin: missing"), std::string::npos);
}

TEST(Manifest, CorruptManifestIsAClearError) {
  auto d = test::scratch();
  test::write_text(d / "manifest.json", "{\"records\": [");
  test::expect_error<DataError>([&] { manifest::Manifest(d).read(); }, {"manifest.json", "parse error"});
}

TEST(Manifest, ShowGivesLineage) {
  auto d = test::scratch();
  test::write_text(d / "in.tar", "x");
  test::write_text(d / "out.h5", "y");
  manifest::Manifest m(d);
  auto a = m.begin_record("synth", json::object());
  m.add_output(a, manifest::file_entry(d, d / "in.tar"));
  m.patch_record(a, {{"status", "complete"}});
  auto b = m.begin_record("prep", json::object());
  json e = manifest::file_entry(d, d / "out.h5");
  e["input"] = manifest::file_entry(d, d / "in.tar");
  m.add_output(b, e);
  m.patch_record(b, {{"status", "complete"}});
  std::string s = manifest::show(d, "out.h5");
  EXPECT_NE(s.find("out.h5"), std::string::npos);
  EXPECT_NE(s.find("prep  complete"), std::string::npos);
  EXPECT_NE(s.find("in.tar"), std::string::npos);
  EXPECT_NE(s.find("synth  complete"), std::string::npos);
  EXPECT_EQ(manifest::recorded_outputs(m.read(), "prep").count("out.h5"), 1u);
}
