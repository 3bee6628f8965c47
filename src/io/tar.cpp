// Tar reading and writing. Formats: ustar headers, GNU 'L' long names, pax 'x' path and size
// records (pax globals 'g' are skipped).
#include "io/tar.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "core/error.hpp"
#include "core/fs.hpp"

namespace mcm::io {
namespace {
constexpr size_t kBlock = 512;

// Numeric header field: octal (leading spaces/NULs, up to the first non-digit, as tar and
// tarfile read it) or GNU base-256 (high bit of the first byte set), which carries sizes of
// 8 GiB and more. nullopt for a negative or overflowing base-256 value.
std::optional<uint64_t> parse_number(const char* p, size_t n) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  if (u[0] & 0x80) {
    if (u[0] & 0x40) return std::nullopt;  // sign bit: negative
    uint64_t v = u[0] & 0x3f;
    for (size_t i = 1; i < n; ++i) {
      if (v > (UINT64_MAX >> 8)) return std::nullopt;
      v = (v << 8) | u[i];
    }
    return v;
  }
  uint64_t v = 0;  // at most 12 octal digits: 36 bits, no overflow
  size_t i = 0;
  while (i < n && (p[i] == ' ' || p[i] == '\0')) ++i;
  for (; i < n && p[i] >= '0' && p[i] <= '7'; ++i) v = v * 8 + static_cast<uint64_t>(p[i] - '0');
  return v;
}

std::string field(const char* p, size_t n) { return std::string(p, strnlen(p, n)); }

bool header_checksum_ok(const unsigned char* h) {
  auto stored = parse_number(reinterpret_cast<const char*>(h) + 148, 8);
  uint64_t sum = 0;
  for (size_t i = 0; i < kBlock; ++i) sum += (i >= 148 && i < 156) ? ' ' : h[i];
  return stored && sum == *stored;
}

bool is_file(char type) { return type == '0' || type == '\0' || type == '7'; }
// Headers that describe the next member rather than being one.
bool is_extended(char type) { return type == 'L' || type == 'x'; }
// Headers with nothing for us that must not consume what 'L'/'x' said about the next member:
// pax globals (ignored: a global path or size cannot sensibly apply to every member) and GNU
// long link names.
bool is_ignored_meta(char type) { return type == 'g' || type == 'K'; }

// The records of a pax extended header that change how the next member is read.
struct PaxRecords {
  std::optional<std::string> path;
  std::optional<uint64_t> size;
};

uint64_t parse_pax_size(const std::string& v, size_t at) {
  uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') throw DataError(cat("size record at offset ", at, ": \"", v, "\" is not a decimal number"));
    if (n > (UINT64_MAX - 9) / 10) throw DataError(cat("size record at offset ", at, ": ", v, " is out of range"));
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

// Applies one record's key and value. An empty value deletes the field (POSIX), so the ustar
// header's own value is used again.
void apply_pax_record(const std::string& key, std::string value, size_t at, PaxRecords& out) {
  if (key == "path") {
    out.path = value.empty() ? std::nullopt : std::optional<std::string>(std::move(value));
  } else if (key == "size") {
    out.size = value.empty() ? std::nullopt : std::optional<uint64_t>(parse_pax_size(value, at));
  }
}

// Parses "LEN KEY=VALUE\n" records, LEN counting the whole record. Every length is checked
// against the buffer before use; a NUL where a record would start ends the list (as tarfile).
// Throws DataError naming the record's offset in the header data.
void parse_pax(const std::vector<uint8_t>& d, PaxRecords& out) {
  size_t i = 0;
  while (i < d.size() && d[i] != 0) {
    size_t sp = i;
    uint64_t len = 0;  // bounded below by d.size() <= kMaxExtendedHeader: no overflow
    for (; sp < d.size() && d[sp] >= '0' && d[sp] <= '9' && len <= d.size(); ++sp) len = len * 10 + (d[sp] - '0');
    if (sp == i || sp >= d.size() || d[sp] != ' ')
      throw DataError(cat("bad record length at offset ", i, " (expected digits and a space)"));
    // Shortest record: digits, space, a one-byte key, '=', '\n'.
    if (len < sp - i + 4 || len > d.size() - i)
      throw DataError(cat("record length ", len, " at offset ", i, " is out of range (", d.size() - i, " bytes left)"));
    const size_t end = i + len - 1;
    if (d[end] != '\n') throw DataError(cat("record at offset ", i, " does not end in a newline"));
    const auto* body = d.data() + sp + 1;
    const auto* eq = std::find(body, d.data() + end, '=');
    if (eq == body || eq == d.data() + end) throw DataError(cat("record at offset ", i, " has no key=value"));
    apply_pax_record(std::string(body, eq), std::string(eq + 1, d.data() + end), i, out);
    i += len;
  }
}
}  // namespace

struct TarReader::Header {
  uint64_t at = 0;  ///< byte offset of the header block
  std::string name;
  uint64_t size = 0;
  char type = '0';
};

// Note [extended headers]: GNU 'L' and pax 'x' headers describe the member after them; what
// they say waits here until a member header arrives ('g' and 'K' headers in between leave it).
struct TarReader::Pending {
  std::optional<std::string> long_name;
  PaxRecords pax;
  const char* what = nullptr;  ///< kind of the last extended header, for truncation messages
  uint64_t at = 0;             ///< and its offset
  void apply(Header& h) const {
    if (pax.path) h.name = *pax.path;
    else if (long_name) h.name = *long_name;
    if (pax.size) h.size = *pax.size;
  }
};

TarReader::TarReader(std::filesystem::path path) : path_(std::move(path)) {
  f_.reset(std::fopen(path_.c_str(), "rb"));
  if (!f_) throw IoError(cat("open tar ", path_, ": ", errno_text(errno)));
  struct stat st {};
  if (::fstat(fileno(f_.get()), &st) != 0) throw IoError(cat("stat tar ", path_, ": ", errno_text(errno)));
  // A pipe or device has no size; its members are then read in bounded chunks (read_data).
  size_known_ = S_ISREG(st.st_mode);
  file_size_ = size_known_ ? static_cast<uint64_t>(st.st_size) : 0;
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

// Reads and validates one header block; false at the end of the archive (end-of-archive zero
// block, or EOF at a block boundary: accepted without end blocks, as tarfile does).
bool TarReader::read_header(Header& h) {
  unsigned char b[kBlock];
  h.at = offset_;
  size_t got = std::fread(b, 1, kBlock, f_.get());
  offset_ += got;
  if (got != kBlock && std::ferror(f_.get())) throw IoError(cat("read tar ", path_, " at byte ", offset_, ": ", errno_text(errno)));
  const bool end = got == 0 || (got == kBlock && std::all_of(b, b + kBlock, [](unsigned char c) { return c == 0; }));
  if (end) {
    done_ = true;
    return false;
  }
  if (got != kBlock)
    throw DataError(cat("truncated tar ", path_, ": header at byte ", h.at, " has ", got, " of 512 bytes"));
  if (!header_checksum_ok(b)) {
    if (h.at == 0) throw DataError(cat("read tar ", path_, ": not a tar archive (bad header checksum at byte 0)"));
    throw DataError(cat("corrupt tar ", path_, ": bad header checksum at byte ", h.at));
  }
  const char* c = reinterpret_cast<const char*>(b);
  h.type = c[156];
  h.name = field(c, 100);
  // POSIX ustar splits long names into prefix/name. GNU's magic ("ustar  ") differs in its sixth
  // byte and GNU keeps access times where ustar has the prefix, so only POSIX gets joined.
  if (std::memcmp(c + 257, "ustar\0", 6) == 0) {
    std::string prefix = field(c + 345, 155);
    if (!prefix.empty()) h.name = prefix + "/" + h.name;
  }
  auto size = parse_number(c + 124, 12);
  if (!size) throw DataError(cat("corrupt tar ", path_, ": header of \"", h.name, "\" at byte ", h.at, " has a bad size field"));
  h.size = *size;
  return true;
}

// Note [sizes are input]: a header's size is whatever the file says, so memory is committed
// only for bytes the file holds. For a regular file the claim is checked against its size
// before allocating; a stream of unknown length is read in chunks, growing as bytes arrive.
void TarReader::check_fits(const Header& h) const {
  if (size_known_ && h.size > file_size_ - std::min(offset_, file_size_))
    throw DataError(cat("truncated tar ", path_, ": member \"", h.name, "\" at byte ", h.at, " needs ", h.size,
                        " bytes, file ends at byte ", file_size_));
}

std::vector<uint8_t> TarReader::read_data(const Header& h) {
  check_fits(h);
  constexpr uint64_t kChunk = uint64_t{1} << 20;
  std::vector<uint8_t> data;
  while (data.size() < h.size) {
    const size_t old = data.size();
    data.resize(size_known_ ? h.size : old + std::min(kChunk, h.size - old));
    if (!read_exact(data.data() + old, data.size() - old))
      throw DataError(cat("truncated tar ", path_, ": member \"", h.name, "\" at byte ", h.at, " needs ", h.size,
                          " bytes, file ends at byte ", offset_));
  }
  skip_padding(h.size);
  return data;
}

// Data of members we do not return (directories, links, unknown types, pax globals): passed
// over without allocating.
void TarReader::skip_data(const Header& h) {
  check_fits(h);
  if (size_known_) {
    if (h.size && ::fseeko(f_.get(), static_cast<off_t>(h.size), SEEK_CUR) != 0)
      throw IoError(cat("seek tar ", path_, " at byte ", offset_, ": ", errno_text(errno)));
    offset_ += h.size;
  } else {
    char buf[kBlock * 8];
    for (uint64_t left = h.size; left > 0;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(left, sizeof buf));
      if (!read_exact(buf, n))
        throw DataError(cat("truncated tar ", path_, ": member \"", h.name, "\" at byte ", h.at, " needs ", h.size,
                            " bytes, file ends at byte ", offset_));
      left -= n;
    }
  }
  skip_padding(h.size);
}

void TarReader::skip_padding(uint64_t size) {
  const size_t pad = (kBlock - size % kBlock) % kBlock;
  char skip[kBlock];
  // Padding missing at the very end: the data is complete, tolerate it.
  if (pad && !read_exact(skip, pad)) done_ = true;
}

// A GNU long name or pax header: bounded, read, and remembered for the next member.
void TarReader::read_extended(const Header& h, Pending& pending) {
  const char* what = h.type == 'L' ? "long-name header" : "pax header";
  current_.clear();  // the member it describes is not known yet
  if (h.size > kMaxExtendedHeader)
    throw DataError(cat("corrupt tar ", path_, ": ", what, " at byte ", h.at, " claims ", h.size, " bytes (limit ",
                        kMaxExtendedHeader, ")"));
  auto data = read_data(h);
  pending.what = what;
  pending.at = h.at;
  if (h.type == 'L') {
    pending.long_name = std::string(data.begin(), std::find(data.begin(), data.end(), 0));
    return;
  }
  try {
    parse_pax(data, pending.pax);
  } catch (const DataError& e) {
    throw DataError(cat("corrupt tar ", path_, ": pax header at byte ", h.at, ": ", e.what()));
  }
}

bool TarReader::next(TarMember& out) {
  Pending pending;  // Note [extended headers]
  Header h;
  while (!done_ && read_header(h)) {
    if (is_extended(h.type)) { read_extended(h, pending); continue; }
    if (is_ignored_meta(h.type)) { skip_data(h); continue; }
    pending.apply(h);
    pending = Pending{};
    current_ = h.name;
    if (!is_file(h.type)) { skip_data(h); continue; }  // directories, links, devices
    out.data = read_data(h);
    out.name = std::move(h.name);
    return true;
  }
  if (pending.what)
    throw DataError(cat("truncated tar ", path_, ": ends after the ", pending.what, " at byte ", pending.at,
                        pending.long_name ? cat(" of \"", *pending.long_name, "\"") : std::string()));
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
