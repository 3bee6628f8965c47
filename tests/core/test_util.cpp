// fs (atomic write, lock RAII), checksums, progress lines.
#include "core/checksum.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/metrics.hpp"
#include "core/progress.hpp"

#include <nlohmann/json.hpp>
#include <sstream>
#include "../test_util.hpp"

using namespace mcm;

TEST(Fs, WriteAtomicReplacesAndLeavesNoTemp) {
  auto d = test::scratch();
  fs::write_atomic(d / "x.txt", "one");
  fs::write_atomic(d / "x.txt", "two");
  EXPECT_EQ(fs::read_text(d / "x.txt"), "two");
  for (auto& e : std::filesystem::directory_iterator(d)) EXPECT_NE(e.path().extension(), ".tmp") << e.path();
  test::expect_error<IoError>([&] { fs::read_file(d / "nope"); }, {"nope", "No such file"});
}

TEST(Fs, FileLockIsMoveOnlyAndReleases) {
  auto d = test::scratch();
  fs::FileLock a(d / "l");
  EXPECT_TRUE(a.held());
  fs::FileLock b(std::move(a));
  EXPECT_FALSE(a.held());
  EXPECT_TRUE(b.held());
  {
    fs::FileLock c(std::move(b));
    EXPECT_TRUE(c.held());
  }
  fs::FileLock again(d / "l");  // would block forever if the moved lock had not been released
  EXPECT_TRUE(again.held());
}

TEST(Checksum, FileMatchesBytes) {
  auto d = test::scratch();
  test::write_text(d / "f", "abc");
  EXPECT_EQ(checksum::of_file(d / "f"), checksum::of_bytes("abc"));
  EXPECT_EQ(checksum::of_bytes("abc").rfind("xxh3:", 0), 0u);
  EXPECT_NE(checksum::hash64("k", 1), checksum::hash64("k", 2));
}

TEST(Progress, LineHasRateAndEta) {
  Progress p("prep", 10, "clips", false);
  p.add(5);
  std::string l = p.line();
  EXPECT_NE(l.find("prep: 5/10 clips (50%)"), std::string::npos) << l;
  EXPECT_NE(l.find("ETA"), std::string::npos);
  EXPECT_EQ(format_duration(3725), "1h02m");
  EXPECT_EQ(format_duration(65), "1m05s");
}

TEST(Metrics, JsonLinesAppendWithTime) {
  auto d = test::scratch();
  {
    MetricsWriter m(d / "m.jsonl");
    m.write({{"event", "a"}, {"n", 1}});
    m.write({{"event", "b"}, {"n", 2}});
  }
  MetricsWriter(d / "m.jsonl").write({{"event", "c"}});
  std::istringstream in(fs::read_text(d / "m.jsonl"));
  std::vector<nlohmann::json> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(nlohmann::json::parse(l));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[1]["n"], 2);
  EXPECT_EQ(lines[2]["event"], "c");
  EXPECT_GT(lines[0]["time"].get<double>(), 1.7e9);
  test::expect_error<IoError>([&] { MetricsWriter(d / "no" / "dir" / "m.jsonl"); }, {"m.jsonl"});
}
