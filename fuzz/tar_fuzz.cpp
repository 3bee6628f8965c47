// libFuzzer target for the tar reader and WebDataset grouping (shards are untrusted files). A
// DataError (any mcm::Error) is the expected refusal; a crash, a sanitizer report, a leak, an
// allocation past -malloc_limit_mb (a header's size was trusted), another exception type, or a
// result that breaks the invariants below is a finding. Each input is read as it is and with
// every header checksum repaired (Note [repaired checksums]), from a regular file and from a
// pipe (Note [two read paths]). Build and run with fuzz/run.sh tar (README "Fuzzing").
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "io/tar.hpp"
#include "io/webdataset.hpp"

namespace {

[[noreturn]] void finding(const char* what, const std::string& detail) {
  std::fprintf(stderr, "tar_fuzz: %s (%s)\n", what, detail.c_str());
  std::abort();
}

// Runs fn; an mcm::Error is the reader's refusal (returns true), anything else a finding.
template <class F>
bool refused(F&& fn) {
  try {
    fn();
    return false;
  } catch (const mcm::Error&) {
    return true;
  } catch (const std::exception& e) {
    finding("unexpected exception", std::string(typeid(e).name()) + ": " + e.what());
  }
}

std::string fd_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// The input as a regular file: one memfd, rewritten for every input (no fd or file per run).
std::string as_file(const std::vector<uint8_t>& bytes) {
  static const int fd = memfd_create("tar_fuzz.tar", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, 0) != 0) finding("memfd", std::to_string(errno));
  if (!bytes.empty() && pwrite(fd, bytes.data(), bytes.size(), 0) != static_cast<ssize_t>(bytes.size()))
    finding("memfd write", std::to_string(errno));
  return fd_path(fd);
}

struct Outcome {
  std::vector<mcm::io::TarMember> members;
  bool error = false;
};

// Reads every member, checking what TarReader promises for any input of `size` bytes.
void read_members(mcm::io::TarReader& r, size_t size, Outcome& out) {
  size_t total = 0;
  mcm::io::TarMember m;
  out.error = refused([&] {
    while (r.next(m)) {
      total += m.data.size();
      out.members.push_back(std::move(m));
      // Each member's data are distinct bytes of the file, and each member costs a 512-byte header.
      if (total > size) finding("members hold more bytes than the file", out.members.back().name);
      if (out.members.size() * 512 > size) finding("more members than headers fit", out.members.back().name);
    }
  });
  if (!out.error && refused([&] { if (r.next(m)) finding("a member after the end", m.name); }))
    finding("next() after the end throws", "");
}

Outcome read_file(const std::vector<uint8_t>& bytes) {
  Outcome out;
  std::optional<mcm::io::TarReader> r;
  if (refused([&] { r.emplace(as_file(bytes)); })) finding("cannot open the memfd", "");
  read_members(*r, bytes.size(), out);
  return out;
}

// Note [two read paths]: a regular file has a size, so a member claiming more bytes than are left
// is refused before allocation; a pipe has none, so members are read in growing chunks. Both
// must return the same members and agree on whether the archive is broken. The pipe holds the
// whole input (F_SETPIPE_SZ), so no writer thread is needed; inputs that do not fit skip this.
std::optional<Outcome> read_pipe(const std::vector<uint8_t>& bytes) {
  int p[2];
  if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) finding("pipe", std::to_string(errno));
  fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
  std::optional<Outcome> out;
  if (bytes.empty() || write(p[1], bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size())) {
    std::optional<mcm::io::TarReader> r;
    // Opened while the write end is open: opening a pipe with no writer blocks.
    if (refused([&] { r.emplace(fd_path(p[0])); })) finding("cannot open the pipe", "");
    close(p[1]);
    p[1] = -1;
    out.emplace();
    read_members(*r, bytes.size(), *out);
  }
  if (p[1] >= 0) close(p[1]);
  close(p[0]);
  return out;
}

void compare(const Outcome& file, const Outcome& pipe) {
  if (file.error != pipe.error) finding("file and pipe disagree on an error", file.error ? "file" : "pipe");
  if (file.members.size() != pipe.members.size()) finding("file and pipe read different member counts", "");
  for (size_t i = 0; i < file.members.size(); ++i)
    if (file.members[i].name != pipe.members[i].name || file.members[i].data != pipe.members[i].data)
      finding("file and pipe read different members", file.members[i].name);
}

// What a later stage relies on for a sample key it accepts as safe.
void check_key(const std::string& key) {
  std::optional<std::string> why;
  if (refused([&] { why = mcm::io::unsafe_key_reason(key); })) finding("unsafe_key_reason throws", key);
  if (why) return;
  if (key.empty() || key.front() == '/' || key.find('\0') != std::string::npos || key == ".." ||
      key.rfind("../", 0) == 0 || key.find("/../") != std::string::npos || key.find("//") != std::string::npos)
    finding("an unsafe key passes unsafe_key_reason", key);
}

// Groups samples, checking what WebDatasetReader promises.
void read_samples(const std::vector<uint8_t>& bytes) {
  std::optional<mcm::io::WebDatasetReader> r;
  if (refused([&] { r.emplace(as_file(bytes)); })) finding("cannot open the memfd", "");
  mcm::io::Sample s;
  size_t total = 0;
  bool ended = false;
  refused([&] {
    while (r->next(s)) {
      if (s.key.empty() || s.files.empty()) finding("empty sample", s.key);
      for (const auto& [ext, data] : s.files) {
        auto split = mcm::io::split_key(s.key + "." + ext);
        if (!split || split->first != s.key || split->second != ext) finding("key and extension do not split back", s.key + "." + ext);
        total += data.size();
      }
      if (total > bytes.size()) finding("samples hold more bytes than the file", s.key);
      check_key(s.key);
    }
    ended = true;
    if (r->next(s)) finding("a sample after the end", s.key);
  });
  if (ended && r->error() && r->error()->empty()) finding("empty error message", "");
}

// Note [repaired checksums]: almost every mutation of a header breaks its checksum, which the
// reader checks first, so the interesting fields behind it (sizes, types, pax records) are
// reached through a copy where every 512-byte block carries the checksum of its own bytes. Data
// blocks change at bytes 148..155 too, which only adds noise.
std::vector<uint8_t> repair_checksums(const uint8_t* data, size_t size) {
  std::vector<uint8_t> v(data, data + size);
  for (size_t at = 0; at + 512 <= v.size(); at += 512) {
    uint8_t* h = v.data() + at;
    unsigned sum = 8 * ' ';
    for (size_t i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? 0 : h[i];
    std::snprintf(reinterpret_cast<char*>(h) + 148, 8, "%06o", sum);
    h[155] = ' ';
  }
  return v;
}

void run(const std::vector<uint8_t>& bytes) {
  Outcome file = read_file(bytes);
  if (auto pipe = read_pipe(bytes)) compare(file, *pipe);
  read_samples(bytes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  run(std::vector<uint8_t>(data, data + size));
  run(repair_checksums(data, size));  // Note [repaired checksums]
  return 0;
}
