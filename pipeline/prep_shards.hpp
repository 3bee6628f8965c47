// What the training stages (teacher, distill) learn from prep's video latent shards before they
// start: the shard list, per-sample shapes, the captions seen in training, and a checksum of all
// shards (the stage's input identity). Read by rank 0, broadcast to every rank.
#pragma once
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "dist/dist_context.hpp"

namespace mcm::stages {

struct ShardInfo {
  std::vector<std::filesystem::path> shards;  ///< prep/video-*.h5, sorted
  std::vector<int64_t> latent, text;          ///< per-sample shapes {C, T, H, W} and {L, D}
  std::string checksum;                       ///< of all shards
  std::set<std::string> captions;
};

/// Collective. IoError naming `stage` and the folder when there are no video shards (run prep
/// first) or one cannot be read; DataError when they hold image latents.
ShardInfo read_video_shards(const dist::DistContext& ctx, const std::filesystem::path& prep_dir, const std::string& stage);

/// Nested JSON objects as flat "a.b.c" -> leaf entries added to `out` (resume identities).
void flatten_json(const nlohmann::json& j, const std::string& prefix, nlohmann::json& out);

}  // namespace mcm::stages
