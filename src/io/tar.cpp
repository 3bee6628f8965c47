// Tar reading and writing. Formats: ustar headers, GNU 'L' long names, pax 'x' path records.
#include "io/tar.hpp"

#include <cstring>

#include "core/error.hpp"
#include "core/fs.hpp"

namespace mcm::io {
namespace {
constexpr size_t kBlock = 512;

uint64_t parse_octal(const char* p, size_t n) {
  // GNU base-256 for sizes >= 8 GiB: high bit of the first byte set.
  if (static_cast<unsigned char>(p[0]) & 0x80) {
    uint64_t v = static_cast<unsigned char>(p[0]) & 0x7f;
    for (size_t i = 1; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
    return v;
  }
  uint64_t v = 0;
  size_t i = 0;
  while (i < n && (p[i] == ' ' || p[i] == '\0')) ++i;
  for (; i < n && p[i] >= '0' && p[i] <= '7'; ++i) v = v * 8 + static_cast<uint64_t>(p[i] - '0');
  return v;
}

std::string field(const char* p, size_t n) { return std::string(p, strnlen(p, n)); }

bool header_checksum_ok(const unsigned char* h) {
  uint64_t stored = parse_octal(reinterpret_cast<const char*>(h) + 148, 8);
  uint64_t sum = 0;
  for (size_t i = 0; i < kBlock; ++i) sum += (i >= 148 && i < 156) ? ' ' : h[i];
  return sum == stored;
}

// Returns the "path" value of a pax extended header, or "".
std::string pax_path(const std::vector<uint8_t>& d) {
  size_t i = 0;
  while (i < d.size()) {
    size_t sp = i;
    while (sp < d.size() && d[sp] != ' ') ++sp;
    if (sp >= d.size()) break;
    size_t len = 0;
    for (size_t k = i; k < sp; ++k) {
      if (d[k] < '0' || d[k] > '9' || len > d.size()) throw DataError("corrupt pax header: bad record length");
      len = len * 10 + (d[k] - '0');
    }
    // A record is "LEN KEY=VALUE\n": LEN covers itself, the space and the newline.
    if (len <= sp - i + 1 || i + len > d.size()) throw DataError("corrupt pax header: record length out of range");
    std::string rec(d.begin() + sp + 1, d.begin() + i + len - 1);  // without trailing '\n'
    if (rec.rfind("path=", 0) == 0) return rec.substr(5);
    i += len;
  }
  return "";
}
}  // namespace

TarReader::TarReader(std::filesystem::path path) : path_(std::move(path)) {
  f_.reset(std::fopen(path_.c_str(), "rb"));
  if (!f_) throw IoError(cat("open tar ", path_, ": ", errno_text(errno)));
}
TarReader::~TarReader() = default;
TarReader::TarReader(TarReader&&) noexcept = default;
TarReader& TarReader::operator=(TarReader&&) noexcept = default;

bool TarReader::read_exact(void* buf, size_t n) {
  size_t got = std::fread(buf, 1, n, f_.get());
  offset_ += got;
  if (got != n && std::ferror(f_.get())) throw IoError(cat("read tar ", path_, " at byte ", offset_, ": ", errno_text(errno)));
  return got == n;
}

bool TarReader::next(TarMember& out) {
  std::string long_name;
  while (!done_) {
    unsigned char h[kBlock];
    uint64_t header_at = offset_;
    size_t got = std::fread(h, 1, kBlock, f_.get());
    offset_ += got;
    if (got == 0 && !std::ferror(f_.get())) {  // EOF without end blocks: accepted, as tarfile does
      if (!long_name.empty())
        throw DataError(cat("truncated tar ", path_, ": ends after the long-name header of \"", long_name, "\""));
      done_ = true;
      break;
    }
    if (got != kBlock)
      throw DataError(cat("truncated tar ", path_, ": header at byte ", header_at, " has ", got, " of 512 bytes"));
    bool zero = true;
    for (auto c : h) if (c) { zero = false; break; }
    if (zero) { done_ = true; break; }
    if (!header_checksum_ok(h)) {
      if (members_ == 0 && header_at == 0) throw DataError(cat("read tar ", path_, ": not a tar archive (bad header checksum at byte 0)"));
      throw DataError(cat("corrupt tar ", path_, ": bad header checksum at byte ", header_at));
    }
    const char* c = reinterpret_cast<const char*>(h);
    uint64_t size = parse_octal(c + 124, 12);
    char type = c[156];
    std::string name = field(c, 100);
    if (std::memcmp(c + 257, "ustar", 5) == 0) {
      std::string prefix = field(c + 345, 155);
      if (!prefix.empty()) name = prefix + "/" + name;
    }
    if (!long_name.empty()) { name = long_name; long_name.clear(); }
    current_ = name;
    // Sanity bound: a member larger than 64 GiB is a corrupt header, not data.
    if (size > (uint64_t{64} << 30)) throw DataError(cat("corrupt tar ", path_, ": member \"", name, "\" claims ", size, " bytes"));
    std::vector<uint8_t> data(size);
    if (size && !read_exact(data.data(), size))
      throw DataError(cat("truncated tar ", path_, ": member \"", name, "\" at byte ", header_at, " needs ", size,
                          " bytes, file ends at byte ", offset_));
    uint64_t pad = (kBlock - size % kBlock) % kBlock;
    if (pad) {
      char skip[kBlock];
      if (!read_exact(skip, pad)) {
        // Padding missing at the very end: data is complete, tolerate it.
        done_ = true;
      }
    }
    ++members_;
    if (type == 'L') { long_name = std::string(data.begin(), data.end()); while (!long_name.empty() && long_name.back() == '\0') long_name.pop_back(); continue; }
    if (type == 'x') {
      try {
        long_name = pax_path(data);
      } catch (const DataError& e) {
        throw DataError(cat("tar ", path_, ": ", e.what(), " at byte ", header_at));
      }
      continue;
    }
    if (type != '0' && type != '\0' && type != '7') continue;  // dirs, links, global pax: skipped
    out.name = std::move(name);
    out.data = std::move(data);
    return true;
  }
  return false;
}

TarWriter::TarWriter(std::filesystem::path path) : path_(std::move(path)) {
  tmp_ = path_;
  tmp_ += ".tmp";
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_) throw IoError(cat("create tar ", tmp_, ": ", errno_text(errno)));
}

TarWriter::~TarWriter() {
  if (f_) {
    std::fclose(f_);
    std::remove(tmp_.c_str());
  }
}

void TarWriter::write(const void* p, size_t n) {
  if (std::fwrite(p, 1, n, f_) != n) throw IoError(cat("write tar ", tmp_, ": ", errno_text(errno)));
}

void TarWriter::write_header(const std::string& name, size_t size) {
  require<IoError>(f_ != nullptr, "tar ", path_, ": add after finish");
  require<IoError>(size < (uint64_t{1} << 33), "tar ", path_, ": member \"", name, "\" of ", size,
                   " bytes exceeds ustar's 8 GiB limit");
  require<IoError>(!name.empty() && name.size() < 100, "tar ", path_, ": member name \"", name,
                   "\" must be 1..99 bytes (ustar)");
  char h[kBlock] = {};
  std::memcpy(h, name.data(), name.size());
  std::snprintf(h + 100, 8, "%07o", 0644);
  std::snprintf(h + 108, 8, "%07o", 0);
  std::snprintf(h + 116, 8, "%07o", 0);
  std::snprintf(h + 124, 12, "%011llo", static_cast<unsigned long long>(size));
  std::snprintf(h + 136, 12, "%011o", 0);
  h[156] = '0';
  std::memcpy(h + 257, "ustar", 6);
  std::memcpy(h + 263, "00", 2);
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < kBlock; ++i) sum += static_cast<unsigned char>(h[i]);
  std::snprintf(h + 148, 8, "%06o", sum);
  h[155] = ' ';
  write(h, kBlock);
}

void TarWriter::add(const std::string& name, const void* data, size_t size) {
  write_header(name, size);
  if (size) write(data, size);
  static const char zeros[kBlock] = {};
  size_t pad = (kBlock - size % kBlock) % kBlock;
  if (pad) write(zeros, pad);
}

void TarWriter::finish() {
  require<IoError>(f_ != nullptr, "tar ", path_, ": finish called twice");
  static const char zeros[2 * kBlock] = {};
  write(zeros, sizeof zeros);
  commit();
}

void TarWriter::finish_truncated(const std::string& name, const std::string& data, size_t keep) {
  write_header(name, data.size());
  write(data.data(), std::min(keep, data.size()));
  commit();
}

void TarWriter::commit() {
  int flushed = std::fflush(f_);
  int err = errno;
  int closed = std::fclose(f_);
  if (closed != 0) err = errno;
  f_ = nullptr;
  if (flushed != 0 || closed != 0) {
    std::remove(tmp_.c_str());
    throw IoError(cat("close tar ", tmp_, ": ", errno_text(err)));
  }
  fs::commit_rename(tmp_, path_);
}

}  // namespace mcm::io
