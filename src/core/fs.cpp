// Durable file operations, durable appends and the fcntl lock used by the manifest.
#include "core/fs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include "core/error.hpp"

namespace mcm::fs {
namespace {
// fcntl locks belong to the process, so threads of one process also serialise on a mutex.
std::mutex g_lock_mutex;

template <class Out>
void read_fd(int fd, const stdfs::path& path, Out& out) {
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
}
}  // namespace

std::vector<uint8_t> read_file(const stdfs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(cat("open ", path, ": ", errno_text(errno)));
  std::vector<uint8_t> out;
  read_fd(fd, path, out);
  return out;
}

std::string read_text(const stdfs::path& path) {
  auto bytes = read_file(path);
  return std::string(bytes.begin(), bytes.end());
}

bool read_text_if_exists(const stdfs::path& path, std::string& out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return false;
    throw IoError(cat("open ", path, ": ", errno_text(errno)));
  }
  std::string text;
  read_fd(fd, path, text);
  out = std::move(text);
  return true;
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

std::vector<std::string> list_dir(const stdfs::path& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    if (errno == ENOENT) return names;
    throw IoError(cat("open directory ", dir, ": ", errno_text(errno)));
  }
  errno = 0;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
    errno = 0;
  }
  int e = errno;
  ::closedir(d);
  if (e != 0) throw IoError(cat("read directory ", dir, ": ", errno_text(e)));
  return names;
}

bool remove_file(const stdfs::path& path) {
  if (::unlink(path.c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  throw IoError(cat("remove ", path, ": ", errno_text(errno)));
}

AppendFile::AppendFile(const stdfs::path& path) : path_(path) {
  // O_EXCL first, to know whether this call created the file (its folder entry then needs an fsync).
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  bool created = fd_ >= 0;
  if (!created && errno == EEXIST) fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd_ < 0) throw IoError(cat("open for appending ", path, ": ", errno_text(errno)));
  if (created) {
    try {
      fsync_dir(path.parent_path());
    } catch (...) {
      close();
      throw;
    }
  }
}

void AppendFile::append(std::string_view data) {
  require<IoError>(fd_ >= 0, "append to ", path_, ": file is not open");
  struct stat st{};
  if (::fstat(fd_, &st) != 0) throw IoError(cat("stat ", path_, ": ", errno_text(errno)));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      // Single writer: the file was st.st_size long before this call.
      if (::ftruncate(fd_, st.st_size) != 0) close();  // cannot clean up: refuse further appends
      throw IoError(cat("append to ", path_, ": ", errno_text(e)));
    }
    done += static_cast<size_t>(n);
  }
  if (::fdatasync(fd_) != 0) throw IoError(cat("fdatasync ", path_, ": ", errno_text(errno)));
}

void AppendFile::close() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

AppendFile::~AppendFile() { close(); }
AppendFile::AppendFile(AppendFile&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }
AppendFile& AppendFile::operator=(AppendFile&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = o.fd_;
    path_ = std::move(o.path_);
    o.fd_ = -1;
  }
  return *this;
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

namespace {
int remove_entry(const char* path, const struct stat*, int, struct FTW*) { return ::remove(path) == 0 ? 0 : errno; }
}  // namespace

void remove_tree(const stdfs::path& dir) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    require<IoError>(errno == ENOENT, "remove ", dir, ": ", std::strerror(errno));
    return;
  }
  int rc = ::nftw(dir.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  require<IoError>(rc == 0, "remove ", dir, ": ", std::strerror(rc > 0 ? rc : errno));
}

}  // namespace mcm::fs
