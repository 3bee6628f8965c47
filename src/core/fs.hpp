// Durable file operations: atomic replace (temp + fsync + rename + dir fsync), durable appends,
// whole-file reads, folder listing, and an inter-process lock. See STYLE.md 14.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace mcm::fs {
namespace stdfs = std::filesystem;

/// Reads a whole file; throws IoError naming the path.
std::vector<uint8_t> read_file(const stdfs::path& path);
std::string read_text(const stdfs::path& path);
/// Like read_text, but false (and `out` untouched) when the file does not exist.
bool read_text_if_exists(const stdfs::path& path, std::string& out);

/// Writes data to path atomically: path.tmp, fsync, rename over path, fsync of the folder.
void write_atomic(const stdfs::path& path, std::string_view data);

/// fsync a file (by path) and, separately, a directory; throw IoError on failure.
void fsync_path(const stdfs::path& path);
void fsync_dir(const stdfs::path& dir);

/// Renames tmp to final and makes the rename durable (fsync of both and of the folder).
void commit_rename(const stdfs::path& tmp, const stdfs::path& final_path);

/// Creates directories (like mkdir -p); throws IoError naming the path.
void make_dirs(const stdfs::path& dir);

/// Names of the entries of a folder (no "." or ".."), unsorted; empty if the folder does not
/// exist. POSIX readdir: libtorch exports its own copy of std::filesystem's iterators.
std::vector<std::string> list_dir(const stdfs::path& dir);

/// Removes a folder and everything below it (like rm -rf; symlinks are removed, not followed);
/// nothing happens if it does not exist. POSIX nftw: libtorch exports a broken copy of
/// std::filesystem::remove_all that torch-linked programs would bind to. IoError on failure.
void remove_tree(const stdfs::path& dir);

/// Removes a file; true if it was there. Throws IoError on any failure but "not found".
bool remove_file(const stdfs::path& path);

/// A file opened for durable appends (O_APPEND), for a single writer. Move-only; the moved-from
/// object is closed. Creating the file makes its folder entry durable too.
class AppendFile {
 public:
  AppendFile() = default;
  /// Opens `path` for appending, creating it (and fsyncing its folder) if absent.
  explicit AppendFile(const stdfs::path& path);
  ~AppendFile();
  AppendFile(AppendFile&& o) noexcept;
  AppendFile& operator=(AppendFile&& o) noexcept;
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;

  /// Appends data in full and fdatasyncs: durable when this returns. If the write fails the
  /// file is cut back to its previous length, so a later append never follows a partial one.
  void append(std::string_view data);
  bool is_open() const { return fd_ >= 0; }
  const stdfs::path& path() const { return path_; }
  void close() noexcept;

 private:
  int fd_ = -1;
  stdfs::path path_;
};

/// Exclusive advisory lock on a lock file (fcntl, so it also works on NFS with lockd).
/// Held for the object's lifetime. Move-only; the moved-from object holds nothing. A process
/// holds at most one FileLock at a time (threads of a process serialise on a mutex).
class FileLock {
 public:
  explicit FileLock(const stdfs::path& lock_path);
  ~FileLock();
  FileLock(FileLock&& o) noexcept;
  FileLock& operator=(FileLock&& o) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  bool held() const { return fd_ >= 0; }

 private:
  void release() noexcept;
  int fd_ = -1;
};

}  // namespace mcm::fs
