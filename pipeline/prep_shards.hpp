// What the training stages (teacher, distill) learn from prep's video latent shards before they
// start: the shard list, per-sample shapes, the captions seen in training, and a checksum of all
// shards (the stage's input identity). Read by rank 0, broadcast to every rank.
#pragma once
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "dist/dist_context.hpp"
#include "train/latent_loader.hpp"
#include "train/train_config.hpp"

namespace mcm::models {
class TextEncoder;
}

namespace mcm::stages {

struct ShardInfo {
  std::vector<std::filesystem::path> shards;  ///< prep/<kind>-*.h5, sorted
  std::vector<int64_t> latent, text;          ///< per-sample shapes {C, T, H, W} and {L, D}
  std::string checksum;                       ///< of all shards
  std::set<std::string> captions;
};

/// The file names of prep/<kind>-*.h5 in `prep_dir`, sorted; empty when there are none (or no folder).
std::vector<std::string> latent_shard_names(const std::filesystem::path& prep_dir, const std::string& kind);

/// prep/<kind>-*.h5 with kind "video" or "image". Collective. IoError naming `stage` and the folder
/// when there are none (run prep first) or one cannot be read; DataError when they hold latents of
/// the other kind.
ShardInfo read_latent_shards(const dist::DistContext& ctx, const std::filesystem::path& prep_dir, const std::string& stage,
                             const std::string& kind = "video");

/// The training loader over these shards for a stage's optimisation keys: its global and micro
/// batch, this rank's slice, the engine's prefetch and preload, the expected shapes, and its own
/// order stream (`stream`, e.g. "teacher_loader").
train::LoaderOptions loader_options(const ShardInfo& info, const train::OptimConfig& optim, const train::TrainSection& engine,
                                    const dist::DistContext& ctx, uint64_t seed, const std::string& stream);

/// ConfigError naming `stage` unless `text` makes the embeddings the shards hold ([L, D]).
void require_text_encoder_fits(const models::TextEncoder& text, const ShardInfo& info, const std::string& stage);

/// The settings a training stage's checkpoint must share to be resumed: everything that shapes the
/// trajectory, flat ("section.key" -> value): the stage's section without its eval_* keys (which
/// never shape training, including ones added later), [models], run.seed, train.precision and the
/// data checksum. Not cadence, logging or timeouts.
nlohmann::json training_identity(const config::Config& cfg, const std::string& section, const ShardInfo& info);

}  // namespace mcm::stages
