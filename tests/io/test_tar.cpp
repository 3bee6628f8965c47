// Tar reader/writer and WebDataset grouping, including GNU tar's own long names and truncation.
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "io/tar.hpp"
#include "io/webdataset.hpp"
#include "../test_util.hpp"

using namespace mcm;

TEST(Tar, RoundTrip) {
  auto d = test::scratch();
  {
    io::TarWriter w(d / "a.tar");
    w.add("k1.txt", std::string("hello"));
    w.add("k1.json", std::string(1000, 'x'));
    w.add("empty.bin", std::string());
    w.finish();
  }
  io::TarReader r(d / "a.tar");
  io::TarMember m;
  ASSERT_TRUE(r.next(m));
  EXPECT_EQ(m.name, "k1.txt");
  EXPECT_EQ(std::string(m.data.begin(), m.data.end()), "hello");
  ASSERT_TRUE(r.next(m));
  EXPECT_EQ(m.data.size(), 1000u);
  ASSERT_TRUE(r.next(m));
  EXPECT_TRUE(m.data.empty());
  EXPECT_FALSE(r.next(m));
}

TEST(Tar, WriterDestroyedWithoutFinishLeavesNothing) {
  auto d = test::scratch();
  { io::TarWriter w(d / "b.tar"); w.add("x.txt", std::string("1")); }
  EXPECT_FALSE(std::filesystem::exists(d / "b.tar"));
  EXPECT_FALSE(std::filesystem::exists(d / "b.tar.tmp"));
}

TEST(Tar, ReadsGnuTarLongNamesAndDirectories) {
  auto d = test::scratch();
  std::string longdir(120, 'd');
  std::filesystem::create_directories(d / "src" / longdir);
  test::write_text(d / "src" / longdir / "0001.txt", "caption");
  std::string cmd = "cd " + (d / "src").string() + " && tar --format=gnu -cf ../g.tar " + longdir + " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  io::WebDatasetReader r(d / "g.tar");
  io::Sample s;
  ASSERT_TRUE(r.next(s));
  EXPECT_EQ(s.key, longdir + "/0001");
  EXPECT_TRUE(s.has("txt"));
}

TEST(Tar, TruncationAndGarbageAreNamed) {
  auto d = test::scratch();
  {
    io::TarWriter w(d / "t.tar");
    w.add("a.txt", std::string(600, 'a'));
    w.add("b.txt", std::string(600, 'b'));
    w.finish();
  }
  std::filesystem::resize_file(d / "t.tar", 512 + 1024 + 512 + 100);
  io::TarReader r(d / "t.tar");
  io::TarMember m;
  ASSERT_TRUE(r.next(m));
  test::expect_error<DataError>([&] { r.next(m); }, {"truncated tar", "t.tar", "\"b.txt\"", "needs 600 bytes"});

  test::write_text(d / "junk.tar", std::string(2000, 'j'));
  io::TarReader j(d / "junk.tar");
  test::expect_error<DataError>([&] { j.next(m); }, {"junk.tar", "not a tar archive"});
  test::expect_error<IoError>([&] { io::TarReader(d / "missing.tar"); }, {"missing.tar", "No such file"});
}

TEST(WebDataset, KeyRulesAndGrouping) {
  EXPECT_EQ(io::split_key("dir/000123.seg.png")->first, "dir/000123");
  EXPECT_EQ(io::split_key("dir/000123.seg.png")->second, "seg.png");
  EXPECT_FALSE(io::split_key("README").has_value());
  auto d = test::scratch();
  {
    io::TarWriter w(d / "w.tar");
    w.add("a.mp4", std::string("m"));
    w.add("a.txt", std::string("t"));
    w.add("a.txt", std::string("t2"));  // repeated extension: a new sample with the same key
    w.add("NOEXT", std::string("?"));
    w.add("b.json", std::string("{}"));
    w.finish();
  }
  io::WebDatasetReader r(d / "w.tar");
  io::Sample s;
  ASSERT_TRUE(r.next(s));
  EXPECT_EQ(s.key, "a");
  EXPECT_EQ(s.files.size(), 2u);
  ASSERT_TRUE(r.next(s));
  EXPECT_EQ(s.key, "a");
  EXPECT_EQ(s.files.size(), 1u);
  ASSERT_TRUE(r.next(s));
  EXPECT_EQ(s.key, "b");
  EXPECT_FALSE(r.next(s));
  EXPECT_EQ(r.skipped_members(), 1);
  EXPECT_FALSE(r.error().has_value());
}

TEST(WebDataset, TruncatedShardKeepsEarlierSamples) {
  auto d = test::scratch();
  {
    io::TarWriter w(d / "w.tar");
    w.add("a.txt", std::string("1"));
    w.add("b.txt", std::string("2"));
    w.finish_truncated("c.txt", std::string(700, 'c'), 100);
  }
  io::WebDatasetReader r(d / "w.tar");
  io::Sample s;
  ASSERT_TRUE(r.next(s));
  EXPECT_EQ(s.key, "a");
  ASSERT_TRUE(r.next(s));
  EXPECT_EQ(s.key, "b");
  EXPECT_FALSE(r.next(s));
  ASSERT_TRUE(r.error().has_value());
  EXPECT_NE(r.error()->find("\"c.txt\""), std::string::npos);
}

namespace {
std::vector<uint8_t> slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
std::filesystem::path long_name_tar(const std::filesystem::path& d, const char* format) {
  std::string longdir(120, 'p');
  std::filesystem::create_directories(d / "src" / longdir);
  test::write_text(d / "src" / longdir / "k.txt", "x");
  auto out = d / (std::string(format) + ".tar");
  std::string cmd = "cd " + (d / "src").string() + " && tar --format=" + format + " -cf " + out.string() + " " + longdir + "/k.txt";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  return out;
}
}  // namespace

TEST(Tar, TruncatedAfterLongNameHeaderIsAnError) {
  auto d = test::scratch();
  auto t = long_name_tar(d, "gnu");
  std::filesystem::resize_file(t, 1024);  // the 'L' header and its one block of name, nothing else
  io::TarReader r(t);
  io::TarMember m;
  test::expect_error<DataError>([&] { r.next(m); }, {"truncated tar", "long-name header"});
}

TEST(Tar, CorruptPaxRecordIsADataError) {
  auto d = test::scratch();
  auto t = long_name_tar(d, "pax");
  io::TarMember m;
  { io::TarReader ok(t); ASSERT_TRUE(ok.next(m)); EXPECT_EQ(m.name.size(), 120u + 6); }
  auto bytes = slurp(t);
  std::string s(bytes.begin(), bytes.end());
  size_t at = s.find(" path=");
  ASSERT_NE(at, std::string::npos);
  size_t start = at;
  while (start > 0 && std::isdigit(static_cast<unsigned char>(s[start - 1]))) --start;
  for (size_t i = start; i < at; ++i) s[i] = '0';
  s[at - 1] = '1';  // "001 path=...": shorter than its own prefix
  test::write_text(d / "bad.tar", s);
  io::TarReader r(d / "bad.tar");
  test::expect_error<DataError>([&] { r.next(m); }, {"pax header", "record length"});
}
