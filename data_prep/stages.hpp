// Stage entry points: each `mcm <stage>` main calls run_<stage>(cfg, ctx); tests call the same.
// Each returns the process exit code (0 complete, 1 finished with recorded failures).
#pragma once
#include "core/config.hpp"
#include "dist/dist_context.hpp"

namespace mcm::stages {

/// Writes the synthetic WebDataset shards (data/videos, data/images) and data/vocab.txt.
int run_synth(const config::Config& cfg, const dist::DistContext& ctx);
/// Turns tar shards into HDF5 latent shards (prep/video-<shard>.h5, prep/image-<shard>.h5) and skip logs.
int run_prep(const config::Config& cfg, const dist::DistContext& ctx);

}  // namespace mcm::stages
