// WebDataset sample keys that must not become file names (unsafe_key_reason).
#include "io/webdataset.hpp"
#include "../test_util.hpp"

using namespace mcm;

namespace {
// The reason for `key`, or "" when it is safe.
std::string reason(const std::string& key) { return io::unsafe_key_reason(key).value_or(""); }
}  // namespace

TEST(WebDataset, SafeKeys) {
  for (const std::string& key : std::vector<std::string>{"000001", "shard-00/000001", "a/b/c", "./000001", "vidéo/çà", "a..b", "..a", "a b~!@#$%^&()",
                          std::string(255, 'n'), std::string(255, 'n') + "/" + std::string(255, 'm')})
    EXPECT_EQ(reason(key), "") << key;
}

TEST(WebDataset, UnsafeKeysSayWhy) {
  EXPECT_EQ(reason(""), "empty key");
  EXPECT_EQ(reason("/etc/passwd"), "absolute path");
  EXPECT_EQ(reason("/"), "absolute path");
  EXPECT_EQ(reason(".."), "\"..\" component at byte 0");
  EXPECT_EQ(reason("../x"), "\"..\" component at byte 0");
  EXPECT_EQ(reason("a/../../x"), "\"..\" component at byte 2");
  EXPECT_EQ(reason("a/.."), "\"..\" component at byte 2");
  EXPECT_EQ(reason("a//b"), "empty path component at byte 2");
  EXPECT_EQ(reason("a/"), "empty path component at byte 2");
  EXPECT_EQ(reason(std::string("a\0b", 3)), "control byte 0 at byte 1");
  EXPECT_EQ(reason("line\nbreak"), "control byte 10 at byte 4");
  EXPECT_EQ(reason("tab\there"), "control byte 9 at byte 3");
  EXPECT_EQ(reason("del\x7f"), "control byte 127 at byte 3");
  EXPECT_EQ(reason("\x1b[31m"), "control byte 27 at byte 0");
  EXPECT_EQ(reason("ok/" + std::string(256, 'n')), "path component at byte 3 has 256 bytes (NAME_MAX 255)");
  std::string deep;
  while (deep.size() < 4096) deep += "abcdefg/";
  deep += "k";
  EXPECT_EQ(reason(deep), "key has " + std::to_string(deep.size()) + " bytes (PATH_MAX 4096)");
  // Control bytes are reported before anything that would print the key.
  EXPECT_EQ(reason("/\n"), "control byte 10 at byte 1");
}

// The keys WebDatasetReader produces from hostile member names are the ones to screen.
TEST(WebDataset, HostileMemberNamesGiveUnsafeKeys) {
  auto d = test::scratch();
  {
    io::TarWriter w(d / "h.tar");
    w.add("../../etc/cron.d/x.txt", std::string("a"));
    w.add("/abs/000001.txt", std::string("b"));
    w.add("ok/000002.txt", std::string("c"));
    w.finish();
  }
  io::WebDatasetReader r(d / "h.tar");
  io::Sample s;
  std::vector<std::string> reasons;
  while (r.next(s)) reasons.push_back(reason(s.key));
  EXPECT_EQ(reasons, (std::vector<std::string>{"\"..\" component at byte 0", "absolute path", ""}));
}
