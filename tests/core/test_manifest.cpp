// Manifest: atomic locked updates and per-rank output journals from concurrent processes, torn
// journal lines, merging at close, verification, lineage.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "core/checksum.hpp"
#include "core/fs.hpp"
#include "core/error.hpp"
#include "core/manifest.hpp"
#include "../test_util.hpp"

using namespace mcm;
using manifest::json;

namespace {
/// Waits for forked children; each must exit 0.
void expect_children_ok(const std::vector<pid_t>& kids) {
  for (pid_t k : kids) {
    int st = 0;
    waitpid(k, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
}

std::vector<std::string> journal_names(const std::filesystem::path& run) {
  auto names = fs::list_dir(run / manifest::kJournalDir);
  std::sort(names.begin(), names.end());
  return names;
}
}  // namespace

TEST(Manifest, ConcurrentProcessesNeverLoseARecord) {
  // Ranks of one record (one journal each) and Slurm array tasks (a record each, opened and
  // closed by locked rewrites) all at once.
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
        std::string own = mm.begin_record("synth", json{{"task", p}});
        manifest::Journal j(d, id, p);
        for (int i = 0; i < each; ++i) {
          j.append(json{{"path", cat("f", p, "-", i)}});
          mm.add_output(own, json{{"path", cat("own", p, "-", i)}}, 0);
        }
        mm.close_record(own, [](json& r) { r["status"] = "complete"; }, {each});
      } catch (...) { _exit(1); }
      _exit(0);
    }
    kids.push_back(pid);
  }
  expect_children_ok(kids);
  auto doc = m.read();  // the shared record is still open: its outputs come from the journals
  EXPECT_EQ((*manifest::find_record(doc, id))["outputs"].size(), static_cast<size_t>(procs * each));
  ASSERT_EQ(doc["records"].size(), static_cast<size_t>(procs + 1));
  for (auto& r : doc["records"]) {
    if (r["stage"] == "synth") {
      EXPECT_EQ(r["outputs"].size(), static_cast<size_t>(each)) << r["id"];
    }
  }
  m.close_record(id, [](json& r) { r["status"] = "complete"; }, std::vector<int64_t>(procs, each));
  auto stored = m.read_stored();
  const json& rec = *manifest::find_record(stored, id);
  ASSERT_EQ(rec["outputs"].size(), static_cast<size_t>(procs * each));
  for (int p = 0; p < procs; ++p)  // merged in (rank, line) order
    for (int i = 0; i < each; ++i) EXPECT_EQ(rec["outputs"][p * each + i]["path"], cat("f", p, "-", i));
  EXPECT_EQ(m.read(), stored);
  EXPECT_TRUE(journal_names(d).empty());
  for (auto& e : std::filesystem::directory_iterator(d))
    EXPECT_NE(e.path().extension(), ".tmp") << e.path();  // no temp left behind
}

TEST(Manifest, AppendFileMovesAndAppends) {
  // The journal's file handle: move-only, the moved-from object closed, appends accumulate.
  auto d = test::scratch();
  fs::AppendFile a(d / "log");
  a.append("one\n");
  fs::AppendFile b(std::move(a));
  EXPECT_FALSE(a.is_open());  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  EXPECT_TRUE(b.is_open());
  b.append("two\n");
  b = fs::AppendFile(d / "log");  // reopen: appends after what is there
  b.append("three\n");
  b.close();
  EXPECT_FALSE(b.is_open());
  test::expect_error<IoError>([&] { b.append("x"); }, {"log", "not open"});
  EXPECT_EQ(fs::read_text(d / "log"), "one\ntwo\nthree\n");
  EXPECT_EQ(fs::list_dir(d), std::vector<std::string>{"log"});
  EXPECT_TRUE(fs::remove_file(d / "log"));
  EXPECT_FALSE(fs::remove_file(d / "log"));
  test::expect_error<IoError>([&] { fs::AppendFile(d / "no" / "such"); }, {"no/such"});
}

TEST(Manifest, RecordingAppendsAJournalLineNotTheManifest) {
  auto d = test::scratch();
  manifest::Manifest m(d);
  std::string id = m.begin_record("prep", json::object());
  std::string before = fs::read_text(m.path());
  m.add_output(id, json{{"path", "a"}, {"bytes", 1}}, 0);
  m.add_output(id, json{{"path", "b"}, {"bytes", 2}}, 1);
  m.add_output(id, json{{"path", "c"}, {"bytes", 3}}, 0);
  EXPECT_EQ(fs::read_text(m.path()), before);  // manifest.json untouched
  EXPECT_EQ(journal_names(d), (std::vector<std::string>{id + ".rank0.jsonl", id + ".rank1.jsonl"}));
  // Each line is JSON (jq can read it) and carries the xxh3 of its entry's exact bytes.
  std::string text = fs::read_text(manifest::journal_path(d, id, 0));
  std::string first = text.substr(0, text.find('\n'));
  json line = json::parse(first);
  EXPECT_EQ(line["entry"], (json{{"path", "a"}, {"bytes", 1}}));
  EXPECT_EQ(first, manifest::journal_line(line["entry"]).substr(0, first.size()));
  auto c = manifest::read_journal(manifest::journal_path(d, id, 0));
  ASSERT_EQ(c.entries.size(), 2u);
  EXPECT_EQ(c.entries[1]["path"], "c");
  EXPECT_EQ(c.torn_bytes, 0u);
}

TEST(Manifest, JournalsMergedAtClose) {
  auto d = test::scratch();
  manifest::Manifest m(d);
  std::string id = m.begin_record("prep", json::object());
  for (int r : {1, 0})
    for (int i = 0; i < 3; ++i) m.add_output(id, json{{"path", cat("r", r, "-", i)}, {"counts", {{"n", 1}}}}, r);
  EXPECT_TRUE((*manifest::find_record(m.read_stored(), id))["outputs"].empty());
  EXPECT_EQ((*manifest::find_record(m.read(), id))["outputs"].size(), 6u);
  // A rank whose journal holds fewer entries than it appended (e.g. a stale NFS view) is named.
  test::expect_error<DataError>([&] { m.close_record(id, [](json&) { FAIL(); }, {3, 4}); },
                                {"journal of rank 1", "holds 3 entries", "appended 4"});
  EXPECT_FALSE(manifest::find_record(m.read_stored(), id)->contains("journals"));
  m.close_record(id, [](json& r) {
    EXPECT_EQ(r["outputs"].size(), 6u);  // f sees the merged outputs
    r["status"] = "complete";
  }, {3, 3});
  json stored = m.read_stored();
  const json& rec = *manifest::find_record(stored, id);
  EXPECT_EQ(rec["journals"], "merged");
  EXPECT_EQ(rec["status"], "complete");
  ASSERT_EQ(rec["outputs"].size(), 6u);
  EXPECT_EQ(rec["outputs"][0]["path"], "r0-0");  // rank order, then line order
  EXPECT_EQ(rec["outputs"][5]["path"], "r1-2");
  EXPECT_EQ(stored["schema_version"], manifest::kSchemaVersion);
  EXPECT_TRUE(journal_names(d).empty());
  EXPECT_EQ(m.read(), stored);
}

TEST(Manifest, TornLastLineIgnoredEarlierLinesKept) {
  auto d = test::scratch();
  manifest::Manifest m(d);
  std::string id = m.begin_record("prep", json::object());
  for (int i = 0; i < 3; ++i) m.add_output(id, json{{"path", cat("f", i)}}, 0);
  auto jp = manifest::journal_path(d, id, 0);
  std::string good = fs::read_text(jp);
  std::string next = manifest::journal_line(json{{"path", "f3"}});
  // A crash mid-append: a prefix of the 4th line, no newline.
  test::write_text(jp, good + next.substr(0, next.size() / 2));
  auto c = manifest::read_journal(jp);
  EXPECT_EQ(c.entries.size(), 3u);
  EXPECT_EQ(c.torn_bytes, next.size() / 2);
  EXPECT_EQ((*manifest::find_record(m.read(), id))["outputs"].size(), 3u);
  // A whole last line whose bytes were not all written (here: one changed), newline included.
  std::string bad = next;
  bad[next.find("f3")] = 'g';
  test::write_text(jp, good + bad);
  EXPECT_EQ(manifest::read_journal(jp).entries.size(), 3u);
  test::write_text(jp, good + std::string(40, '\0'));  // size extended, data never written
  EXPECT_EQ(manifest::read_journal(jp).entries.size(), 3u);
  // The same bad line followed by a valid one is not a crash: corruption, a clear error.
  test::write_text(jp, good + bad + next);
  test::expect_error<DataError>([&] { m.read(); }, {jp.filename().string(), "line 4", "corrupt"});
  // close merges the valid lines only.
  test::write_text(jp, good + next.substr(0, 10));
  m.close_record(id, [](json& r) { r["status"] = "failed"; }, {3});
  EXPECT_EQ((*manifest::find_record(m.read_stored(), id))["outputs"].size(), 3u);
}

TEST(Manifest, NeverClosedRecordIsReadFromItsJournals) {
  // A killed run: outputs recorded, the record never closed. The next run reuses them.
  auto d = test::scratch();
  test::write_text(d / "a.h5", "aaa");
  test::write_text(d / "b.h5", "bbb");
  std::string killed;
  {
    manifest::Manifest m(d);
    killed = m.begin_record("prep", json::object());
    m.add_output(killed, manifest::file_entry(d, d / "a.h5"), 0);
    m.add_output(killed, manifest::file_entry(d, d / "b.h5"), 1);
  }
  manifest::Manifest m(d);
  std::string resumed = m.begin_record("prep", json::object());
  auto prev = manifest::recorded_outputs(m.read(), "prep");
  ASSERT_EQ(prev.size(), 2u);
  EXPECT_EQ(prev["a.h5"]["reused_from"], killed);
  EXPECT_EQ(prev["b.h5"]["checksum"], checksum::of_file(d / "b.h5"));
  EXPECT_NE(manifest::show(d).find("outputs 2"), std::string::npos) << manifest::show(d);
  EXPECT_NE(manifest::show(d, "b.h5").find(killed), std::string::npos);
  // Closing the resumed record leaves the killed record's journals alone.
  m.close_record(resumed, [](json& r) { r["status"] = "complete"; }, {0});
  EXPECT_EQ(journal_names(d).size(), 2u);
  EXPECT_EQ((*manifest::find_record(m.read(), killed))["outputs"].size(), 2u);
}

TEST(Manifest, VerifyChecksFilesRecordedOnlyInJournals) {
  auto d = test::scratch();
  test::write_text(d / "a.bin", "hello");
  manifest::Manifest m(d);
  std::string id = m.begin_record("synth", json::object());
  m.add_output(id, manifest::file_entry(d, d / "a.bin"), 0);
  m.patch_record(id, {{"status", "complete"}});  // status only: the entry stays in the journal
  EXPECT_TRUE(manifest::verify(d).empty());
  test::write_text(d / "a.bin", "hellO");
  auto problems = manifest::verify(d);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("a.bin: checksum"), std::string::npos) << problems[0];
  // A journal whose record is not in the manifest is reported too.
  test::write_text(d / "a.bin", "hello");
  manifest::Journal(d, "prep-lost", 3).append(json{{"path", "x"}});
  problems = manifest::verify(d);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("prep-lost.rank3.jsonl: journal of record prep-lost"), std::string::npos) << problems[0];
}

TEST(Manifest, RepeatedCloseIsIdempotent) {
  auto d = test::scratch();
  manifest::Manifest m(d);
  std::string id = m.begin_record("prep", json::object());
  for (int i = 0; i < 4; ++i) m.add_output(id, json{{"path", cat("f", i)}}, i % 2);
  // Keep copies of the journals, to play a crash between the rewrite and the deletes.
  std::map<std::string, std::string> saved;
  for (auto& n : journal_names(d)) saved[n] = fs::read_text(d / manifest::kJournalDir / n);
  auto close = [&] { m.close_record(id, [](json& r) { r["status"] = "complete"; }, {2, 2}); };
  close();
  json once = m.read_stored();
  close();
  EXPECT_EQ(m.read_stored(), once);
  for (auto& [n, text] : saved) test::write_text(d / manifest::kJournalDir / n, text);
  EXPECT_EQ(m.read(), once);  // leftover lines of a closed record are not folded again
  close();
  EXPECT_EQ(m.read_stored(), once);
  EXPECT_TRUE(journal_names(d).empty());  // and the next close deletes them
  EXPECT_EQ((*manifest::find_record(once, id))["outputs"].size(), 4u);
}

TEST(Manifest, VerifyDetectsChangedMissingAndUnfinished) {
  auto d = test::scratch();
  test::write_text(d / "a.bin", "hello");
  test::write_text(d / "b.bin", "world");
  manifest::Manifest m(d);
  std::string id = m.begin_record("synth", json::object());
  m.add_output(id, manifest::file_entry(d, d / "a.bin"), 0);
  m.add_output(id, manifest::file_entry(d, d / "b.bin"), 1);
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
  m.add_output(a, manifest::file_entry(d, d / "in.tar"), 0);
  m.close_record(a, [](json& r) { r["status"] = "complete"; }, {1});
  auto b = m.begin_record("prep", json::object());
  json e = manifest::file_entry(d, d / "out.h5");
  e["input"] = manifest::file_entry(d, d / "in.tar");
  m.add_output(b, e, 0);
  m.patch_record(b, {{"status", "complete"}});
  std::string s = manifest::show(d, "out.h5");
  EXPECT_NE(s.find("out.h5"), std::string::npos);
  EXPECT_NE(s.find("prep  complete"), std::string::npos);
  EXPECT_NE(s.find("in.tar"), std::string::npos);
  EXPECT_NE(s.find("synth  complete"), std::string::npos);
  EXPECT_EQ(manifest::recorded_outputs(m.read(), "prep").count("out.h5"), 1u);
}
