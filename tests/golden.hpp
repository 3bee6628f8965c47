// Golden data made by the reference implementations (diffusers, transformers, peft, open_clip,
// safetensors): a Python script beside a test, run with the project venv's interpreter once per
// version of the oracle, and shared by every test process that asks for it.
#pragma once
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "core/checksum.hpp"
#include "core/error.hpp"

namespace mcm::test {

namespace golden_detail {

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out += "'";
}

/// Not std::filesystem::remove_all: see the note in test_util.hpp's scratch().
inline void remove_tree(const std::filesystem::path& p) {
  (void)std::system(cat("rm -rf ", shell_quote(p.string())).c_str());
}

/// Holds an exclusive flock on a file for its lifetime (released by the kernel if we die).
class FileLock {
 public:
  explicit FileLock(const std::filesystem::path& p) : fd_(::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
    require<IoError>(fd_ >= 0, "open lock file ", p, ": ", errno_text(errno));
    while (::flock(fd_, LOCK_EX) != 0)
      require<IoError>(errno == EINTR, "flock ", p, ": ", errno_text(errno));
  }
  ~FileLock() { ::close(fd_); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_;
};

}  // namespace golden_detail

/// The project venv's interpreter (CMake's Python3_EXECUTABLE); MCM_PYTHON overrides it.
inline std::string python() {
  const char* p = std::getenv("MCM_PYTHON");
  return p && *p ? p : MCM_TEST_PYTHON;
}

/// Runs `python <source dir>/<script_relpath> args...` and returns its output (stdout and stderr).
/// Throws mcm::Error naming the command, its exit status and the end of its output on failure.
inline std::string run_python(const std::string& script_relpath, const std::vector<std::string>& args = {}) {
  using golden_detail::shell_quote;
  std::string cmd = cat(shell_quote(python()), " ", shell_quote(cat(MCM_TEST_SOURCE_DIR, "/", script_relpath)));
  for (const auto& a : args) cmd += cat(" ", shell_quote(a));
  std::string out;
  int status = -1;
  {
    std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(cat(cmd, " 2>&1").c_str(), "r"), ::pclose);
    require<IoError>(p != nullptr, "popen ", cmd, ": ", errno_text(errno));
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, p.get())) > 0;) out.append(buf, n);
    status = ::pclose(p.release());
  }
  if (status != 0) {
    const size_t keep = 6000;
    const std::string tail = out.size() > keep ? cat("...\n", out.substr(out.size() - keep)) : out;
    const int code = status > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : status;
    throw Error(cat("reference script failed (exit status ", code, "): ", cmd, "\n", tail));
  }
  return out;
}

/// The folder that `script_relpath` (relative to the source tree) fills when run as
/// `python script args... OUT_DIR` (or with every "{out}" inside `args` replaced by OUT_DIR when
/// some argument holds one). The script runs once per key, and the folder is reused from then on:
/// the key covers the script, the Python modules beside it (it may import them), the locked
/// reference versions (scripts/requirements.lock), the interpreter and `args`, so changing any of
/// them regenerates the data. Safe when several test processes ask at once (ctest runs each case
/// in its own process): one runs the script under a file lock into a temporary folder and renames
/// it into place; the others wait and reuse it. Throws mcm::Error with the script's output when it
/// fails.
inline std::filesystem::path golden_dir(const std::string& script_relpath, const std::vector<std::string>& args = {}) {
  namespace fs = std::filesystem;
  using golden_detail::slurp;
  const fs::path source = MCM_TEST_SOURCE_DIR, script = source / script_relpath;
  require<IoError>(fs::is_regular_file(script), "golden script ", script, " not found");
  const fs::path lock = source / "scripts" / "requirements.lock";
  require<IoError>(fs::is_regular_file(lock), "golden data is keyed by ", lock, ", which is missing");

  std::string material = cat("script\n", script_relpath, "\n", slurp(script));
  std::vector<fs::path> siblings;
  for (const auto& e : fs::directory_iterator(script.parent_path()))
    if (e.path().extension() == ".py" && e.path() != script) siblings.push_back(e.path());
  std::sort(siblings.begin(), siblings.end());
  for (const auto& s : siblings) material += cat("\nmodule\n", s.filename().string(), "\n", slurp(s));
  material += cat("\nlock\n", slurp(lock), "\npython\n", python());
  for (const auto& a : args) material += cat("\narg\n", a);
  char key[17];
  std::snprintf(key, sizeof key, "%016llx", static_cast<unsigned long long>(checksum::hash64(material)));

  const fs::path root = fs::temp_directory_path() / "mcm-tests" / "golden";
  fs::create_directories(root);
  const std::string name = cat(script.parent_path().filename().string(), "-", script.stem().string(), "-", key);
  const fs::path dir = root / name;
  if (fs::is_directory(dir)) return dir;  // only ever appears complete: renamed into place
  golden_detail::FileLock held(root / cat(name, ".lock"));
  if (fs::is_directory(dir)) return dir;  // made by another process while we waited

  const fs::path tmp = root / cat(name, ".tmp", ::getpid());
  golden_detail::remove_tree(tmp);
  fs::create_directories(tmp);
  std::vector<std::string> argv;
  bool placed = false;
  for (auto a : args) {
    for (size_t at; (at = a.find("{out}")) != std::string::npos; placed = true) a.replace(at, 5, tmp.string());
    argv.push_back(a);
  }
  if (!placed) argv.push_back(tmp.string());
  try {
    run_python(script_relpath, argv);
  } catch (...) {
    golden_detail::remove_tree(tmp);
    throw;
  }
  std::error_code ec;
  fs::rename(tmp, dir, ec);
  if (ec) {
    golden_detail::remove_tree(tmp);
    require<IoError>(fs::is_directory(dir), "rename ", tmp, " to ", dir, ": ", ec.message());
  }
  return dir;
}

}  // namespace mcm::test
