// Durable file operations and the fcntl lock used by the manifest.
#include "core/fs.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <mutex>
#include <thread>

#include "core/error.hpp"

namespace mcm::fs {
namespace {
// fcntl locks belong to the process, so threads of one process also serialise on a mutex.
std::mutex g_lock_mutex;
}  // namespace

std::vector<uint8_t> read_file(const stdfs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(cat("open ", path, ": ", errno_text(errno)));
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      throw IoError(cat("read ", path, ": ", errno_text(e)));
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  ::close(fd);
  return out;
}

std::string read_text(const stdfs::path& path) {
  auto bytes = read_file(path);
  return std::string(bytes.begin(), bytes.end());
}

void fsync_path(const stdfs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(cat("open for fsync ", path, ": ", errno_text(errno)));
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) throw IoError(cat("fsync ", path, ": ", errno_text(e)));
}

void fsync_dir(const stdfs::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw IoError(cat("open directory ", dir, ": ", errno_text(errno)));
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  // Some file systems refuse fsync on directories; that is not data loss.
  if (rc != 0 && e != EINVAL && e != EROFS) throw IoError(cat("fsync directory ", dir, ": ", errno_text(e)));
}

void commit_rename(const stdfs::path& tmp, const stdfs::path& final_path) {
  fsync_path(tmp);
  if (std::rename(tmp.c_str(), final_path.c_str()) != 0)
    throw IoError(cat("rename ", tmp, " -> ", final_path, ": ", errno_text(errno)));
  fsync_dir(final_path.parent_path());
}

void write_atomic(const stdfs::path& path, std::string_view data) {
  // Unique per writer, so concurrent writers of one path (Slurm array tasks) never share a temp.
  stdfs::path tmp = path;
  tmp += cat(".", ::getpid(), ".", std::hash<std::thread::id>{}(std::this_thread::get_id()) % 100000, ".tmp");
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw IoError(cat("create ", tmp, ": ", errno_text(errno)));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      std::remove(tmp.c_str());
      throw IoError(cat("write ", tmp, ": ", errno_text(e)));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    std::remove(tmp.c_str());
    throw IoError(cat("fsync ", tmp, ": ", errno_text(e)));
  }
  ::close(fd);
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw IoError(cat("rename ", tmp, " -> ", path, ": ", errno_text(errno)));
  fsync_dir(path.parent_path());
}

void make_dirs(const stdfs::path& dir) {
  std::error_code ec;
  stdfs::create_directories(dir, ec);
  if (ec) throw IoError(cat("create directory ", dir, ": ", ec.message()));
}

FileLock::FileLock(const stdfs::path& lock_path) {
  g_lock_mutex.lock();
  fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    int e = errno;
    g_lock_mutex.unlock();
    throw IoError(cat("open lock file ", lock_path, ": ", errno_text(e)));
  }
  struct flock fl{};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  while (::fcntl(fd_, F_SETLKW, &fl) != 0) {
    if (errno == EINTR) continue;
    int e = errno;
    ::close(fd_);
    fd_ = -1;
    g_lock_mutex.unlock();
    throw IoError(cat("lock ", lock_path, ": ", errno_text(e)));
  }
}

void FileLock::release() noexcept {
  if (fd_ < 0) return;
  struct flock fl{};
  fl.l_type = F_UNLCK;
  fl.l_whence = SEEK_SET;
  ::fcntl(fd_, F_SETLK, &fl);
  ::close(fd_);
  fd_ = -1;
  g_lock_mutex.unlock();
}

FileLock::~FileLock() { release(); }
FileLock::FileLock(FileLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
FileLock& FileLock::operator=(FileLock&& o) noexcept {
  if (this != &o) {
    release();
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

}  // namespace mcm::fs
