// Tar reader/writer and WebDataset grouping, including GNU tar's own long names, truncation,
// sizes that exceed the file, pax records (hand-made and from Python's tarfile), and streams.
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>

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

// ---- Hand-made headers: sizes and pax records that writers do not produce -------------------
namespace {
std::string python() {
  const char* p = std::getenv("MCM_PYTHON");
  return p ? p : MCM_TEST_PYTHON;
}

void set_checksum(char* h) {
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; ++i) sum += static_cast<unsigned char>(h[i]);
  std::snprintf(h + 148, 8, "%06o", sum);
  h[155] = ' ';
}

// One 512-byte ustar header with a valid checksum. `size_field`, when given, is the raw 12-byte
// size field (octal text or GNU base-256 bytes).
std::string header(const std::string& name, uint64_t size, char type = '0', const std::string& size_field = "") {
  char h[512] = {};
  std::memcpy(h, name.data(), std::min<size_t>(name.size(), 100));
  std::memcpy(h + 100, "0000644", 8);
  if (size_field.empty()) std::snprintf(h + 124, 12, "%011llo", static_cast<unsigned long long>(size));
  else std::memcpy(h + 124, size_field.data(), std::min<size_t>(size_field.size(), 12));
  h[156] = type;
  std::memcpy(h + 257, "ustar\0" "00", 8);
  set_checksum(h);
  return std::string(h, 512);
}

std::string pad(std::string data) {
  data.resize((data.size() + 511) / 512 * 512, '\0');
  return data;
}

// "LEN key=value\n" with LEN counting the whole record, its own digits included.
std::string pax_record(const std::string& key, const std::string& value) {
  const std::string rest = " " + key + "=" + value + "\n";
  size_t n = rest.size() + 1;
  while (std::to_string(n).size() + rest.size() != n) ++n;
  return std::to_string(n) + rest;
}

std::string member(const std::string& name, const std::string& data, char type = '0') {
  return header(name, data.size(), type) + pad(data);
}

const std::string kEnd(1024, '\0');

std::vector<io::TarMember> read_all(const std::filesystem::path& p) {
  io::TarReader r(p);
  std::vector<io::TarMember> out;
  io::TarMember m;
  while (r.next(m)) out.push_back(m);
  return out;
}

std::string text(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }
}  // namespace

TEST(Tar, MemberLargerThanTheFileIsRefusedBeforeAllocating) {
  auto d = test::scratch();
  // 8 GiB - 1 in octal (the largest plain ustar size) and 2^40 in GNU base-256.
  test::write_text(d / "octal.tar", header("big.bin", 0, '0', "77777777777") + std::string(10, 'x'));
  std::string b256(12, '\0');
  b256[0] = '\x80';
  b256[6] = '\x01';  // 2^40
  test::write_text(d / "b256.tar", member("a.txt", "ok") + header("huge.bin", 0, '0', b256) + std::string(600, 'y'));
  io::TarMember m;
  io::TarReader o(d / "octal.tar");
  test::expect_error<DataError>([&] { o.next(m); },
                                {"truncated tar", "octal.tar", "\"big.bin\" at byte 0", "needs 8589934591 bytes", "file ends at byte 522"});
  io::TarReader b(d / "b256.tar");
  ASSERT_TRUE(b.next(m));
  test::expect_error<DataError>([&] { b.next(m); }, {"\"huge.bin\" at byte 1024", "needs 1099511627776 bytes", "ends at byte 2136"});
  EXPECT_EQ(b.current_name(), "huge.bin");
  // Negative and overflowing base-256 sizes are corrupt headers, not huge members.
  test::write_text(d / "neg.tar", header("neg.bin", 0, '0', std::string(12, '\xff')));
  io::TarReader n(d / "neg.tar");
  test::expect_error<DataError>([&] { n.next(m); }, {"corrupt tar", "\"neg.bin\"", "bad size field"});
}

// What "before allocating" buys: under an address-space cap far below the claimed size, the
// refusal is still a DataError, not std::bad_alloc. Runs in a child so the cap stays there.
TEST(Tar, HugeClaimsNeedNoMemory) {
  auto d = test::scratch();
  test::write_text(d / "big.tar", header("big.bin", 0, '0', "77777777777") + std::string(4096, 'x'));
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    long pages = 0;
    std::ifstream("/proc/self/statm") >> pages;
    rlimit cap{};
    cap.rlim_cur = cap.rlim_max = static_cast<rlim_t>(pages) * sysconf(_SC_PAGESIZE) + (rlim_t{256} << 20);
    setrlimit(RLIMIT_AS, &cap);
    try {
      io::TarReader r(d / "big.tar");
      io::TarMember m;
      r.next(m);
      _exit(10);
    } catch (const DataError&) {
      _exit(0);
    } catch (const std::bad_alloc&) {
      _exit(11);
    } catch (...) {
      _exit(12);
    }
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10: no error, 11: bad_alloc, 12: another exception";
}

TEST(Tar, ExtendedHeadersAreBounded) {
  auto d = test::scratch();
  const uint64_t two_mib = uint64_t{2} << 20;
  // Bounded before the bytes are looked at: the file does hold the 2 MiB.
  test::write_text(d / "L.tar", header("././@LongLink", two_mib, 'L') + std::string(two_mib, 'n') + kEnd);
  test::write_text(d / "x.tar", header("./PaxHeaders/a", two_mib, 'x') + std::string(two_mib, 'p') + kEnd);
  io::TarMember m;
  io::TarReader l(d / "L.tar");
  test::expect_error<DataError>([&] { l.next(m); }, {"corrupt tar", "long-name header at byte 0", "claims 2097152 bytes", "limit 1048576"});
  io::TarReader x(d / "x.tar");
  test::expect_error<DataError>([&] { x.next(m); }, {"corrupt tar", "pax header at byte 0", "claims 2097152 bytes", "limit 1048576"});
  // At the limit a long name is still read.
  std::string name = std::string(io::TarReader::kMaxExtendedHeader - 4, 'k') + ".txt";
  test::write_text(d / "max.tar", header("././@LongLink", name.size(), 'L') + pad(name) + member("short.txt", "v") + kEnd);
  auto all = read_all(d / "max.tar");
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].name, name);
}

TEST(Tar, PaxSizeAndPathOverrideTheHeader) {
  auto d = test::scratch();
  const std::string data(700, 'd');
  // The ustar size field says 0, as tarfile writes it for a member of 8 GiB or more.
  std::string records = pax_record("mtime", "1700000000.25") + pax_record("size", "700") + pax_record("path", "k/000001.bin");
  test::write_text(d / "o.tar", header("./PaxHeaders/x", records.size(), 'x') + pad(records) + header("short", 0) + pad(data) +
                                    member("000002.txt", "next") + kEnd);
  auto all = read_all(d / "o.tar");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].name, "k/000001.bin");
  EXPECT_EQ(text(all[0].data), data);
  EXPECT_EQ(all[1].name, "000002.txt");  // the records applied to one member only
  // An empty value deletes the record (POSIX): the header's own name and size are used.
  std::string empty = pax_record("path", "") + pax_record("size", "");
  test::write_text(d / "e.tar", header("./PaxHeaders/x", empty.size(), 'x') + pad(empty) + member("own.txt", "own") + kEnd);
  all = read_all(d / "e.tar");
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].name, "own.txt");
  EXPECT_EQ(text(all[0].data), "own");
  // A pax size past the end of the file is a truncation like any other.
  std::string big = pax_record("size", "99999999999999");
  test::write_text(d / "big.tar", header("./PaxHeaders/x", big.size(), 'x') + pad(big) + member("a.txt", "a") + kEnd);
  io::TarReader r(d / "big.tar");
  io::TarMember m;
  test::expect_error<DataError>([&] { r.next(m); }, {"truncated tar", "\"a.txt\" at byte 1024", "needs 99999999999999 bytes"});
}

TEST(Tar, PaxGlobalHeadersAreIgnored) {
  auto d = test::scratch();
  std::string g = pax_record("path", "everything.txt") + pax_record("size", "1");
  std::string x = pax_record("path", "renamed.txt");
  // A global header between an extended header and its member leaves the extended one in force.
  test::write_text(d / "g.tar", header("./GlobalHead", g.size(), 'g') + pad(g) + member("a.txt", "aaa") +
                                    header("./PaxHeaders/x", x.size(), 'x') + pad(x) + header("./GlobalHead", g.size(), 'g') +
                                    pad(g) + member("b.txt", "bbb") + kEnd);
  auto all = read_all(d / "g.tar");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].name, "a.txt");
  EXPECT_EQ(text(all[0].data), "aaa");
  EXPECT_EQ(all[1].name, "renamed.txt");
  EXPECT_EQ(text(all[1].data), "bbb");
}

TEST(Tar, PaxRecordsAreParsedStrictly) {
  auto d = test::scratch();
  const std::string ok = pax_record("path", "a.txt");
  struct Case { const char* what; std::string records; std::vector<std::string> message; };
  const std::vector<Case> cases = {
      {"no length", "path=a.txt\n", {"bad record length at offset 0"}},
      {"no space", "12path=a.txt\n", {"bad record length at offset 0"}},
      {"past the data", ok + "99 path=b\n", {"record length 99 at offset " + std::to_string(ok.size()), "out of range"}},
      {"shorter than itself", "3 p\n", {"record length 3 at offset 0", "out of range"}},
      {"no newline", "11 path=abc", {"record at offset 0 does not end in a newline"}},
      {"no key", "9 =a.txt\n", {"record at offset 0 has no key=value"}},
      {"no equals", "11 pathabc\n", {"record at offset 0 has no key=value"}},
      {"size not a number", pax_record("size", "12a"), {"size record at offset 0", "not a decimal number"}},
      {"size overflows", pax_record("size", "99999999999999999999999"), {"size record at offset 0", "out of range"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    test::write_text(d / "p.tar", member("a.txt", "first") + header("./PaxHeaders/x", c.records.size(), 'x') + pad(c.records) +
                                      member("b.txt", "b") + kEnd);
    io::TarReader r(d / "p.tar");
    io::TarMember m;
    ASSERT_TRUE(r.next(m));
    try {
      r.next(m);
      ADD_FAILURE() << "accepted";
    } catch (const DataError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("corrupt tar"), std::string::npos) << msg;
      EXPECT_NE(msg.find("pax header at byte 1024"), std::string::npos) << msg;
      for (const auto& part : c.message) EXPECT_NE(msg.find(part), std::string::npos) << "missing \"" << part << "\" in: " << msg;
    }
  }
  // A NUL where a record would start ends the list (tarfile does the same).
  std::string nul = ok + std::string(5, '\0') + "garbage";
  test::write_text(d / "n.tar", header("./PaxHeaders/x", nul.size(), 'x') + pad(nul) + member("b.txt", "b") + kEnd);
  EXPECT_EQ(read_all(d / "n.tar").at(0).name, "a.txt");
}

TEST(Tar, TruncationInsideExtendedHeadersNamesNoMember) {
  auto d = test::scratch();
  std::string x = pax_record("path", "b.json");
  std::string whole = member("b.txt", "b") + header("./PaxHeaders/x", x.size(), 'x') + pad(x) + member("b.json", "{}") + kEnd;
  test::write_text(d / "cut.tar", whole.substr(0, 1024 + 512 + 10));  // inside the pax data
  test::write_text(d / "end.tar", whole.substr(0, 1024 + 1024));       // right after it
  io::TarMember m;
  io::TarReader cut(d / "cut.tar");
  ASSERT_TRUE(cut.next(m));
  test::expect_error<DataError>([&] { cut.next(m); }, {"truncated tar", "at byte 1024 needs"});
  // The member the header described is unknown, so WebDataset cannot call the sample complete.
  EXPECT_EQ(cut.current_name(), "");
  io::TarReader end(d / "end.tar");
  ASSERT_TRUE(end.next(m));
  test::expect_error<DataError>([&] { end.next(m); }, {"truncated tar", "ends after the pax header at byte 1024"});
  io::WebDatasetReader w(d / "end.tar");
  io::Sample s;
  EXPECT_FALSE(w.next(s));  // b.txt alone may be half of sample b: dropped
  EXPECT_TRUE(w.error().has_value());
}

TEST(Tar, GnuHeadersHaveNoUstarPrefix) {
  auto d = test::scratch();
  std::string h = header("000001.txt", 1);
  std::memcpy(h.data() + 257, "ustar  \0", 8);  // GNU magic and version
  std::memcpy(h.data() + 345, "14520013400", 11);  // GNU keeps the access time here
  set_checksum(h.data());
  test::write_text(d / "gnu.tar", h + pad("x") + kEnd);
  EXPECT_EQ(read_all(d / "gnu.tar").at(0).name, "000001.txt");
}

// Streams (pipes, FIFOs) have no size: members are read in chunks as the bytes arrive, with the
// same results and the same truncation errors.
TEST(Tar, ReadsFromAFifo) {
  auto d = test::scratch();
  const std::string big(3u << 20, 'b');  // several chunks
  const std::string whole = member("a.txt", "aaa") + member("b.bin", big) + member("dir", "", '5') + kEnd;
  auto feed = [&](const std::string& bytes) {
    std::filesystem::remove(d / "fifo");
    EXPECT_EQ(mkfifo((d / "fifo").c_str(), 0600), 0);
    return std::thread([p = d / "fifo", bytes] { std::ofstream(p, std::ios::binary) << bytes; });
  };
  // The reader stops at the first end block and closes the FIFO; the writer's last write may
  // then find no reader, which must be EPIPE here, not a SIGPIPE for the test process.
  auto old_sigpipe = std::signal(SIGPIPE, SIG_IGN);
  auto writer = feed(whole);
  auto all = read_all(d / "fifo");
  writer.join();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[1].name, "b.bin");
  EXPECT_EQ(all[1].data.size(), big.size());

  writer = feed(whole.substr(0, 1024 + 512 + 1000));
  io::TarReader r(d / "fifo");
  io::TarMember m;
  ASSERT_TRUE(r.next(m));
  test::expect_error<DataError>([&] { r.next(m); }, {"truncated tar", "\"b.bin\" at byte 1024", "needs 3145728 bytes", "file ends at byte 2536"});
  writer.join();
  std::signal(SIGPIPE, old_sigpipe);
}

// Archives written by the reference implementation, Python's tarfile, in pax format: long and
// non-ASCII paths, a global header, records we ignore, and a member whose size only its pax
// record carries (tarfile's layout for members of 8 GiB and more, made here by zeroing the
// ustar field). tarfile's own reading of each archive is the expected result.
TEST(Tar, ReadsPythonPaxArchives) {
  auto d = test::scratch();
  const char* script = R"PY(
import io, sys, tarfile
out = sys.argv[1]
def add(tf, name, data, pax=None):
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 1700000000
    if pax:
        info.pax_headers = pax
    tf.addfile(info, io.BytesIO(data))
with tarfile.open(out + "/pax.tar", "w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "global"}) as tf:
    add(tf, "p" * 150 + "/000001.txt", b"long path")
    add(tf, "vid\u00e9o/000002.txt", "l\u00e9gende".encode())
    add(tf, "000003.bin", bytes(range(256)) * 3, pax={"size": "768"})
    add(tf, "000004.txt", b"x" * 600, pax={"mtime": "1700000000.5", "comment": "a\nb"})
raw = bytearray(open(out + "/pax.tar", "rb").read())
at = next(i for i in range(0, len(raw), 512) if raw[i:i + 11] == b"000003.bin\0")
raw[at + 124:at + 136] = b"00000000000\0"
raw[at + 148:at + 156] = b" " * 8
raw[at + 148:at + 156] = b"%06o\0 " % sum(raw[at:at + 512])
open(out + "/pax-size.tar", "wb").write(raw)
for name in ("pax.tar", "pax-size.tar"):
    with tarfile.open(out + "/" + name) as tf, open(out + "/" + name + ".list", "w", encoding="utf-8") as f:
        for m in tf.getmembers():
            if m.isfile():
                f.write(m.name + "\t" + tf.extractfile(m).read().hex() + "\n")
)PY";
  test::write_text(d / "make.py", script);
  ASSERT_EQ(std::system((python() + " " + (d / "make.py").string() + " " + d.string()).c_str()), 0);
  for (const char* name : {"pax.tar", "pax-size.tar"}) {
    SCOPED_TRACE(name);
    std::vector<std::string> expected, got;
    std::ifstream list(d / (std::string(name) + ".list"));
    for (std::string line; std::getline(list, line);) expected.push_back(line);
    for (const auto& m : read_all(d / name)) {
      std::string hex;
      char buf[3];
      for (uint8_t b : m.data) { std::snprintf(buf, sizeof buf, "%02x", b); hex += buf; }
      got.push_back(m.name + "\t" + hex);
    }
    EXPECT_EQ(got, expected);
    EXPECT_EQ(expected.size(), 4u);
  }
}

// Findings of fuzz/tar_fuzz.cpp, kept as fuzz/corpus/tar/regress-*.input. The fuzzer also reads
// each input with every header checksum repaired (Note [repaired checksums] there); so does this.
TEST(Tar, FuzzRegressions) {
  auto d = test::scratch();
  auto bytes = slurp(std::filesystem::path(MCM_TEST_SOURCE_DIR) / "fuzz/corpus/tar/regress-size-beyond-file.input");
  ASSERT_FALSE(bytes.empty());
  std::string s(bytes.begin(), bytes.end());
  for (size_t at = 0; at + 512 <= s.size(); at += 512) set_checksum(s.data() + at);
  test::write_text(d / "r.tar", s);
  // A header at byte 3584 claims 0o4524770400 bytes (626 MB) in a 5.6 KB file: the old reader
  // allocated and zero-filled it before noticing the truncation.
  io::TarReader r(d / "r.tar");
  io::TarMember m;
  test::expect_error<DataError>([&] { while (r.next(m)) {} }, {"truncated tar", "at byte 3584 needs 626258176 bytes"});
  io::WebDatasetReader w(d / "r.tar");
  io::Sample smp;
  try {
    while (w.next(smp)) {}
    EXPECT_TRUE(w.error().has_value());
  } catch (const DataError&) {
    // also fine: nothing readable before the cut
  }
}
