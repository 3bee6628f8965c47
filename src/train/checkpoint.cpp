#include "train/checkpoint.hpp"

#include <algorithm>
#include <cstdio>

#include "core/checksum.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"

namespace mcm::train {
namespace stdfs = std::filesystem;
using json = nlohmann::json;

namespace {
// Step of a "step-%08d" folder name, or -1.
int64_t step_of(const std::string& name) {
  if (name.size() != 13 || name.rfind("step-", 0) != 0) return -1;
  int64_t s = 0;
  for (char c : name.substr(5)) {
    if (c < '0' || c > '9') return -1;
    s = s * 10 + (c - '0');
  }
  return s;
}

std::vector<std::pair<int64_t, stdfs::path>> step_folders(const stdfs::path& dir) {
  std::vector<std::pair<int64_t, stdfs::path>> out;
  if (!stdfs::is_directory(dir)) return out;
  for (auto& name : fs::list_dir(dir))
    if (int64_t s = step_of(name); s >= 0 && stdfs::is_directory(dir / name)) out.emplace_back(s, dir / name);
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

stdfs::path checkpoint_path(const stdfs::path& dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step-%08lld", static_cast<long long>(step));
  return dir / name;
}

std::vector<stdfs::path> complete_checkpoints(const stdfs::path& dir) {
  std::vector<stdfs::path> out;
  for (auto& [s, p] : step_folders(dir))
    if (stdfs::exists(p / "DONE")) out.push_back(p);
  return out;
}

std::vector<stdfs::path> torn_checkpoints(const stdfs::path& dir) {
  std::vector<stdfs::path> out;
  for (auto& [s, p] : step_folders(dir))
    if (!stdfs::exists(p / "DONE")) out.push_back(p);
  return out;
}

stdfs::path save_checkpoint(const stdfs::path& dir, int64_t step, dist::Communicator& comm,
                            const std::function<void(const stdfs::path&)>& write_root,
                            const std::function<void(const stdfs::path&)>& write_rank, int64_t keep) {
  const stdfs::path folder = checkpoint_path(dir, step);
  const bool root = comm.rank() == 0;
  if (root) {
    fs::remove_tree(folder);  // a torn attempt at the same step
    fs::make_dirs(folder);
    fs::fsync_dir(dir);
  }
  comm.barrier("checkpoint " + folder.filename().string() + ": folder");
  write_rank(folder);
  if (root) write_root(folder);
  comm.barrier("checkpoint " + folder.filename().string() + ": files");
  if (root) {
    json done{{"step", step}, {"world_size", comm.world_size()}, {"files", json::object()}};
    for (auto& name : fs::list_dir(folder)) {
      if (name == "DONE") continue;
      stdfs::path f = folder / name;
      done["files"][name] = {{"bytes", stdfs::file_size(f)}, {"xxh3", checksum::of_file(f)}};
    }
    fs::fsync_dir(folder);
    fs::write_atomic(folder / "DONE", done.dump(1) + "\n");
    // Retention: the newest `keep` complete ones, and nothing torn below the newest.
    auto complete = complete_checkpoints(dir);
    for (size_t i = 0; i + static_cast<size_t>(keep) < complete.size(); ++i) fs::remove_tree(complete[i]);
    for (auto& p : torn_checkpoints(dir))
      if (step_of(p.filename().string()) < step) fs::remove_tree(p);
  }
  return folder / "DONE";
}

json verify_checkpoint(const stdfs::path& folder) {
  std::string text;
  require<DataError>(fs::read_text_if_exists(folder / "DONE", text), "checkpoint ", folder, ": no DONE marker");
  json done;
  try {
    done = json::parse(text);
  } catch (const json::exception& e) {
    throw DataError(cat("checkpoint ", folder / "DONE", ": not JSON (", e.what(), ")"));
  }
  for (auto& [name, e] : done.at("files").items()) {
    stdfs::path f = folder / name;
    std::error_code ec;
    auto bytes = stdfs::file_size(f, ec);
    require<DataError>(!ec, "checkpoint file ", f, ": missing (", ec.message(), ")");
    require<DataError>(bytes == e.at("bytes").get<uint64_t>(), "checkpoint file ", f, ": ", bytes, " bytes, DONE says ",
                       e.at("bytes").get<uint64_t>());
    require<DataError>(checksum::of_file(f) == e.at("xxh3").get<std::string>(), "checkpoint file ", f,
                       ": checksum differs from DONE (changed after it was written)");
  }
  return done;
}

}  // namespace mcm::train
