// Exceptions with context: one mcm::Error base and the kinds callers branch on.
// Library code throws; only a stage's main catches, logs and exits.
#pragma once
#include <sstream>
#include <stdexcept>
#include <cstdint>
#include <string>
#include <vector>

namespace mcm {

/// Concatenates any streamable values into one string (the project's formatting helper).
template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

/// A shape for messages: "[4, 8, 16, 16]".
inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += cat(i ? ", " : "", s[i]);
  return out + "]";
}

/// Base of every mcm exception; what() is the full, human-readable context.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};
/// Bad configuration: unknown key, wrong type, violated cross-field rule.
class ConfigError : public Error { using Error::Error; };
/// A file or system call failed: open, read, write, rename, HDF5, FFmpeg I/O.
class IoError : public Error { using Error::Error; };
/// Input data is malformed: corrupt video, truncated tar, bad caption, checksum mismatch.
class DataError : public Error { using Error::Error; };
/// Distributed runtime failure: MPI, NCCL, a peer rank.
class DistError : public Error { using Error::Error; };

/// Throws E with the concatenated message when cond is false.
template <class E = Error, class... Args>
void require(bool cond, const Args&... args) {
  if (!cond) throw E(cat(args...));
}

/// strerror(errno) as a string, for system-call messages.
std::string errno_text(int err);

}  // namespace mcm
