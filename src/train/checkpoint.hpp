// Training checkpoints (Note [checkpoint protocol]): `<dir>/step-%08d/` holds the trainable
// weights (model.safetensors, reference names), optimizer state, EMA weights, trainer.json (step,
// schedule, data position, config) from rank 0, and rank<R>.safetensors (that rank's generator
// states) from every rank; a `DONE` file, written by rank 0 after all ranks finished, makes it
// complete. Include only from torch translation units.
#pragma once
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "dist/communicator.hpp"

namespace mcm::train {

// Note [checkpoint protocol]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~
// 1. rank 0 removes any leftover `step-N/` (a torn earlier attempt) and creates it; barrier.
// 2. every rank writes its files atomically (tmp + fsync + rename); barrier (timeout-guarded).
// 3. rank 0 fsyncs the folder and writes `DONE` atomically: JSON with the step and the bytes and
//    xxh3 of every file, so a reader can check the checkpoint is the one that was written.
// 4. rank 0 records DONE in the manifest ("retention": "rolling") and deletes all but the newest
//    `keep` complete checkpoints, and any incomplete folder older than the new one.
// A kill at any point leaves either a complete checkpoint or a folder without DONE, which
// resume ignores (and the next save of that step replaces).

/// The folder of checkpoint `step`.
std::filesystem::path checkpoint_path(const std::filesystem::path& dir, int64_t step);

/// Complete checkpoints (with DONE) in `dir`, oldest first.
std::vector<std::filesystem::path> complete_checkpoints(const std::filesystem::path& dir);

/// Steps of folders without DONE (torn writes), for the log.
std::vector<std::filesystem::path> torn_checkpoints(const std::filesystem::path& dir);

/// Collective save. `write_root(folder)` runs on rank 0, `write_rank(folder)` on every rank;
/// returns the DONE file's path (on every rank). `keep` complete checkpoints are kept.
std::filesystem::path save_checkpoint(const std::filesystem::path& dir, int64_t step, dist::Communicator& comm,
                                      const std::function<void(const std::filesystem::path&)>& write_root,
                                      const std::function<void(const std::filesystem::path&)>& write_rank, int64_t keep);

/// Reads DONE and checks every listed file's size and checksum; DataError naming the file that
/// does not match (a checkpoint changed after it was written).
nlohmann::json verify_checkpoint(const std::filesystem::path& folder);

}  // namespace mcm::train
