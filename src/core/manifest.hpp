// The run manifest (<run>/manifest.json): one record per stage run, the link between stages.
// Every change is read-modify-write under an fcntl lock and written atomically, so concurrent
// ranks and Slurm array tasks never lose a record. Paths inside are relative to the run folder.
#pragma once
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mcm::manifest {
namespace stdfs = std::filesystem;
using json = nlohmann::json;

inline constexpr int kSchemaVersion = 1;

/// {"path": relative path, "bytes": size, "checksum": "xxh3:..."} of a file under run_dir.
json file_entry(const stdfs::path& run_dir, const stdfs::path& file);

class Manifest {
 public:
  explicit Manifest(stdfs::path run_dir);
  const stdfs::path& run_dir() const { return dir_; }
  stdfs::path path() const { return dir_ / "manifest.json"; }

  /// Reads the current document (an empty one if there is none yet); throws DataError if corrupt.
  json read() const;
  /// Applies f to the freshly read document under the lock and writes it back atomically.
  void update(const std::function<void(json&)>& f);

  /// Opens a stage record with status "running"; `header` holds config, seeds, world, hosts...
  /// Returns its id.
  std::string begin_record(const std::string& stage, json header);
  /// Appends an output entry (a file_entry plus stage-specific fields) to a record.
  void add_output(const std::string& record_id, const json& entry);
  /// Sets fields of a record (status, counts, inputs, ended...) by merging `fields` into it.
  void patch_record(const std::string& record_id, const json& fields);

 private:
  stdfs::path dir_;
};

/// The record with this id, or nullptr.
const json* find_record(const json& doc, const std::string& id);
/// Latest output entry per path among records of `stage`. Outputs of running records count:
/// each was added after its file was committed. Each entry carries "reused_from", the id of the
/// record that produced the file (kept from the entry when it was itself reused). Used to skip
/// finished work.
std::map<std::string, json> recorded_outputs(const json& doc, const std::string& stage);

/// Rechecks every recorded file (size and checksum, latest record per path) and every stage's
/// latest record status. Returns human-readable problems; empty means verified.
std::vector<std::string> verify(const stdfs::path& run_dir);
/// Human summary of the records, or the lineage of one output (its record, inputs, their
/// producers, recursively).
std::string show(const stdfs::path& run_dir, const std::string& output = "");

/// Current UTC time as ISO-8601.
std::string now_iso();

}  // namespace mcm::manifest
