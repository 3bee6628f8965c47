// One prep shard: tar -> HDF5 latent shard plus its skip log. A reader thread streams samples,
// decode workers turn them into clips, the calling thread encodes clips in batches on the
// rank's device and writes them in sample order (see Note [prep pipeline] in prep_shard.cpp).
#pragma once
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "core/error.hpp"
#include "data_prep/prep_sample.hpp"
#include "models/encoders.hpp"

namespace mcm::stages {

/// The input shard cannot be read at all (not a tar, unreadable file). Only these count towards
/// prep.max_failed_shards; a failure on our side (output, device, memory) never does.
class UnreadableShard : public DataError {
  using DataError::DataError;
};

struct PrepEncoders {
  std::unique_ptr<models::FrameAutoencoder> ae;
  std::unique_ptr<models::TextEncoder> text;
};

struct ShardJob {
  std::filesystem::path input;     ///< the tar shard
  std::filesystem::path output;    ///< prep/<kind>-<input stem>.h5
  std::filesystem::path skip_log;  ///< prep/<kind>-<input stem>.skipped.jsonl
  bool video = true;
};

struct PrepShardOptions {
  int decode_workers = 1;
  std::string stage_hash;  ///< stored as the shard's config_hash attribute
  int rank = 0;
};

/// Processes one shard into job.output and job.skip_log (both committed atomically, the log
/// after the shard). Returns the counts for the manifest. Throws when the shard cannot be read
/// at all (not a tar, I/O error); sample faults are skipped and logged.
nlohmann::json process_shard(const config::Config& cfg, const ShardJob& job, PrepEncoders& enc,
                             const PrepShardOptions& opt, SkipLog::LogBudget& budget);

}  // namespace mcm::stages
