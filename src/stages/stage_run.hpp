// StageRun: one stage execution as seen by the manifest. Rank 0 opens the record; every rank
// records its outputs as they are committed, in its own journal (O(1) each, Note [manifest
// journals]); finish() closes it collectively. Outputs whose earlier record matches (same stage
// hash, same input checksum, file unchanged) are reused. Work that stopped early continues its
// own record as a new attempt (Note [attempts] in stage_run.cpp).
#pragma once
#include <c10/core/Device.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/manifest.hpp"
#include "dist/dist_context.hpp"

namespace mcm::stages {

class StageRun {
 public:
  /// Collective. `code_version` is the version of the stage's algorithm: bump it when a code
  /// change alters what the stage writes for the same config (decoding, cropping, encoding...),
  /// so earlier outputs stop being reused. `hash_parts` are the config sections/keys that
  /// determine the outputs (never paths; an unknown key is a ConfigError); `extra_hash` adds
  /// what config cannot say, e.g. a vocabulary file's checksum. All three enter stage_hash().
  StageRun(std::string stage, std::string code_version, const config::Config& cfg, const dist::DistContext& ctx,
           const std::vector<std::string>& hash_parts, const std::string& extra_hash = "");

  const std::string& id() const { return id_; }
  const std::string& stage_hash() const { return stage_hash_; }
  const std::filesystem::path& run_dir() const { return run_dir_; }
  manifest::Manifest& manifest() { return manifest_; }

  /// An earlier entry for `output` that can be reused as is: same stage hash, same input
  /// checksum ("" when the output has no input), and the file on disk still matches.
  std::optional<manifest::json> reusable(const std::filesystem::path& output, const std::string& input_checksum) const;
  /// Records a committed output: file_entry(output) merged with `extra` (counts, input...).
  /// Durable on return; O(1) in the number of outputs already recorded.
  manifest::json record_output(const std::filesystem::path& output, manifest::json extra);
  /// Records an entry returned by reusable() under this run (it names its producer in "reused_from").
  void record_reused(const manifest::json& entry);

  /// Collective. Merges every rank's journal into the record (each by name, its entry count
  /// checked), sums the "counts" of its output entries, gathers errors from all ranks, sets status
  /// "complete" (no errors) or "failed", and sets `record_fields` (root's) in the same atomic
  /// write. Returns true if complete. Calling it again changes nothing but the status.
  bool finish(const std::vector<std::string>& my_errors, const manifest::json& record_fields = manifest::json::object());

 private:
  /// Rank 0: the id of the record this run continues (Note [attempts]), or "".
  std::string resumable_record(const manifest::json& doc, const config::Config& cfg) const;

  std::string stage_;
  const config::Config& cfg_;
  const dist::DistContext& ctx_;
  std::filesystem::path run_dir_;
  manifest::Manifest manifest_;
  std::string id_, stage_hash_;
  std::map<std::string, manifest::json> previous_;
  std::optional<manifest::Journal> journal_;  // this rank's, once the record id is known
};

/// Versions of every library this binary uses, for the manifest.
manifest::json environment_versions();
/// Threads for torch and decoders: run.threads, else SLURM_CPUS_PER_TASK under Slurm, else cores / ranks on this node.
int resolve_threads(const config::Config& cfg, const dist::DistContext& ctx);
/// This rank's torch device: its CUDA device (DistContext::device()) or the CPU.
c10::Device rank_device(const dist::DistContext& ctx);
/// Sums numeric leaves of b into a (objects recursively); used for counts.
void add_counts(manifest::json& a, const manifest::json& b);

}  // namespace mcm::stages
