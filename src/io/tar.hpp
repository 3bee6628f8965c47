// POSIX tar (ustar, GNU long names, pax path/size records): a streaming reader that detects
// truncation and never trusts a header's sizes, and a writer for the shards synth produces.
// WebDataset shards are plain tars.
#pragma once
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace mcm::io {

struct TarMember {
  std::string name;           ///< full member path
  std::vector<uint8_t> data;  ///< contents (regular files only)
};

/// Reads regular-file members one by one without loading the archive. Throws DataError on a
/// corrupt header or truncated data, naming the archive, the member and the byte offset.
/// Memory follows the file, not its headers (Note [sizes are input] in tar.cpp): a member is
/// refused before allocation when it claims more bytes than the file has left, and GNU long
/// names and pax headers are limited to kMaxExtendedHeader bytes.
class TarReader {
 public:
  explicit TarReader(std::filesystem::path path);
  ~TarReader();
  TarReader(TarReader&&) noexcept;
  TarReader& operator=(TarReader&&) noexcept;
  TarReader(const TarReader&) = delete;
  TarReader& operator=(const TarReader&) = delete;

  /// Next regular file; false at the end of the archive.
  bool next(TarMember& out);
  const std::filesystem::path& path() const { return path_; }
  /// Name of the member being read (after a truncation error: the truncated one; empty when
  /// the error hit a GNU long-name or pax header, whose member is not known yet).
  const std::string& current_name() const { return current_; }

  /// Largest GNU long name ('L') or pax extended header ('x') accepted, in bytes.
  static constexpr uint64_t kMaxExtendedHeader = uint64_t{1} << 20;

 private:
  struct FileCloser { void operator()(std::FILE* f) const { if (f) std::fclose(f); } };
  struct Header;   // one parsed 512-byte header (tar.cpp)
  struct Pending;  // what 'L' and 'x' headers say about the next member (tar.cpp)
  bool read_header(Header& h);
  void read_extended(const Header& h, Pending& pending);
  std::vector<uint8_t> read_data(const Header& h);
  void skip_data(const Header& h);
  void skip_padding(uint64_t size);
  void check_fits(const Header& h) const;
  bool read_exact(void* buf, size_t n);
  std::filesystem::path path_;
  std::unique_ptr<std::FILE, FileCloser> f_;
  uint64_t offset_ = 0;
  uint64_t file_size_ = 0;   ///< from fstat at open; meaningful when size_known_
  bool size_known_ = false;  ///< a regular file (not a pipe): sizes are checked before reading
  bool done_ = false;
  std::string current_;
};

/// Writes a ustar archive to path.tmp and commits it (fsync + rename) in finish(). Member
/// times and owners are fixed so equal inputs give byte-identical shards. If destroyed without
/// finish(), the temporary file is removed.
class TarWriter {
 public:
  explicit TarWriter(std::filesystem::path path);
  ~TarWriter();
  TarWriter(const TarWriter&) = delete;
  TarWriter& operator=(const TarWriter&) = delete;

  void add(const std::string& name, const void* data, size_t size);
  void add(const std::string& name, const std::vector<uint8_t>& data) { add(name, data.data(), data.size()); }
  void add(const std::string& name, const std::string& text) { add(name, text.data(), text.size()); }
  void finish();
  /// For planting broken shards in tests: writes a member header for all of `data` but only
  /// its first `keep` bytes, then commits the (truncated) archive.
  void finish_truncated(const std::string& name, const std::string& data, size_t keep);

 private:
  void write(const void* p, size_t n);
  void write_header(const std::string& name, size_t size);
  void commit();
  std::filesystem::path path_, tmp_;
  std::FILE* f_ = nullptr;
};

}  // namespace mcm::io
