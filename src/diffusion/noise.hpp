// Gaussian noise tensors from counter-based streams (Note [rng streams] in core/rng.hpp): drawn on
// the CPU from a key, then moved, so noise is identical on CPU and GPU, for any rank, world size
// or thread count.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "core/rng.hpp"

namespace mcm::diffusion {

/// Standard normal noise of `shape`: element i (row-major) is rng::fill_normal element i of `key`,
/// drawn as float32 (float64 when options ask for it), then cast to options' dtype and moved to
/// its device. Throws DataError for a non-floating dtype.
torch::Tensor randn(const rng::Key& key, at::IntArrayRef shape, const torch::TensorOptions& options = {});

/// One key per sample, stacked: row b is randn(keys[b], sample_shape). Keys named by the global
/// sample index make a batch's noise independent of how samples are split over ranks.
torch::Tensor randn_per_sample(const std::vector<rng::Key>& keys, at::IntArrayRef sample_shape,
                               const torch::TensorOptions& options = {});

}  // namespace mcm::diffusion
