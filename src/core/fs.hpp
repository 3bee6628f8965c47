// Durable file operations: atomic replace (temp + fsync + rename + dir fsync), whole-file
// reads, and an inter-process lock. See STYLE.md 14.
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

/// Writes data to path atomically: path.tmp, fsync, rename over path, fsync of the folder.
void write_atomic(const stdfs::path& path, std::string_view data);

/// fsync a file (by path) and, separately, a directory; throw IoError on failure.
void fsync_path(const stdfs::path& path);
void fsync_dir(const stdfs::path& dir);

/// Renames tmp to final and makes the rename durable (fsync of both and of the folder).
void commit_rename(const stdfs::path& tmp, const stdfs::path& final_path);

/// Creates directories (like mkdir -p); throws IoError naming the path.
void make_dirs(const stdfs::path& dir);

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
