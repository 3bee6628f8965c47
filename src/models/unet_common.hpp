// What the video UNets share around their blocks (unet3d.cpp, unet_motion.cpp): diffusers' channel
// plan of the down and up blocks, registering a block's module lists, input checks and the
// per-frame time embedding and context, and the up half's walk over the skip connections.
// Include only from model translation units.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "models/layers.hpp"

namespace mcm::models::unet_common {

/// One down or up block: the (in, out) channels of each of its ResNets, and whether it ends with a
/// downsampler (down) or an upsampler (up): every block but the last.
struct BlockPlan {
  std::vector<std::pair<int64_t, int64_t>> resnets;
  int64_t out = 0;
  bool resample = false;
};

/// Down block i: `layers` ResNets, the first from the previous block's width to block_out_channels[i].
inline std::vector<BlockPlan> down_plan(const std::vector<int64_t>& boc, int64_t layers) {
  std::vector<BlockPlan> plan;
  int64_t out = boc[0];
  for (size_t i = 0; i < boc.size(); ++i) {
    const int64_t in = out;
    out = boc[i];
    BlockPlan b{{}, out, i + 1 < boc.size()};
    for (int64_t l = 0; l < layers; ++l) b.resnets.emplace_back(l == 0 ? in : out, out);
    plan.push_back(std::move(b));
  }
  return plan;
}

/// Up block i (widths reversed): `layers` + 1 ResNets, each taking the running width plus one skip
/// (the last one the next level's width), as diffusers' up blocks concatenate them.
inline std::vector<BlockPlan> up_plan(const std::vector<int64_t>& boc, int64_t layers) {
  const size_t n = boc.size();
  std::vector<int64_t> rev(boc.rbegin(), boc.rend());
  std::vector<BlockPlan> plan;
  int64_t out = rev[0];
  for (size_t i = 0; i < n; ++i) {
    const int64_t prev = out;
    out = rev[i];
    const int64_t in = rev[std::min(i + 1, n - 1)];
    BlockPlan b{{}, out, i + 1 < n};
    for (int64_t l = 0; l <= layers; ++l) {
      const int64_t skip = l == layers ? in : out;
      b.resnets.emplace_back((l == 0 ? prev : out) + skip, out);
    }
    plan.push_back(std::move(b));
  }
  return plan;
}

/// Registers `modules` under `parent` as the ModuleList `name` (diffusers' list names); nothing when empty.
template <class M>
void register_list(torch::nn::Module& parent, const char* name, const std::vector<M>& modules) {
  if (modules.empty()) return;
  auto l = parent.register_module(name, torch::nn::ModuleList());
  for (const auto& m : modules) l->push_back(m);
}

/// Checks sample [B, in_channels, F, H, W], context [B, L, cross_dim] and 1 or B timesteps (DataErrors
/// naming `what`); returns the time embedding [B * F, temb] and the context [B * F, L, D], frame-major.
inline std::pair<torch::Tensor, torch::Tensor> embed_inputs(const char* what, const torch::Tensor& sample, int64_t in_channels,
                                                            const torch::Tensor& context, int64_t cross_dim,
                                                            const torch::Tensor& timesteps, layers::TimestepEmbeddingImpl& te,
                                                            int64_t base_channels, torch::ScalarType dtype,
                                                            const std::optional<torch::Tensor>& cond) {
  require<DataError>(sample.dim() == 5 && sample.size(1) == in_channels, what, ": sample must be [B, ", in_channels,
                     ", F, H, W], got ", sample.sizes());
  require<DataError>(context.dim() == 3 && context.size(0) == sample.size(0) && context.size(2) == cross_dim, what,
                     ": context must be [", sample.size(0), ", L, ", cross_dim, "], got ", context.sizes());
  const int64_t B = sample.size(0), F = sample.size(2);
  torch::Tensor t = timesteps.reshape({-1}).to(sample.device());
  require<DataError>(t.numel() == 1 || t.numel() == B, what, ": ", t.numel(), " timesteps for a batch of ", B);
  t = t.expand({B});
  auto t_emb = layers::timestep_embedding(t, base_channels, /*flip_sin_to_cos=*/true, 0.0).to(dtype);
  return {te.forward(t_emb, cond).repeat_interleave(F, 0), context.repeat_interleave(F, 0)};
}

/// diffusers' forward_upsample_size: H or W not divisible by 2^(levels - 1).
inline bool needs_upsample_size(const torch::Tensor& sample, size_t levels) {
  const int64_t f = int64_t{1} << (levels - 1);
  return sample.size(3) % f != 0 || sample.size(4) % f != 0;
}

/// The down half: every layer of every block, the output of each pushed to `skips` (after the
/// input `h` itself), the block's output before its downsampler to `features` (each when given),
/// then the downsampler. Block has `res`, `layer(i, h, emb, ctx, F)` and `down`.
template <class Block>
torch::Tensor down_half(const std::vector<std::shared_ptr<Block>>& down, torch::Tensor h, const torch::Tensor& emb,
                        const torch::Tensor& ctx, int64_t F, std::vector<torch::Tensor>* skips,
                        std::vector<torch::Tensor>* features) {
  if (skips) skips->push_back(h);
  for (auto& b : down) {
    for (size_t i = 0; i < b->res.size(); ++i) {
      h = b->layer(i, h, emb, ctx, F);
      if (skips) skips->push_back(h);
    }
    if (features) features->push_back(h);
    if (!b->down.is_empty()) {
      h = b->down(h);
      if (skips) skips->push_back(h);
    }
  }
  return h;
}

/// The up half: each block takes its last len(resnets) skips (latest first), concatenates one per
/// layer, runs the layer, and upsamples to the next skip's size when the input was not divisible.
/// Block has `res`, `layer(i, h, emb, ctx, F)` and `up`.
template <class Block>
torch::Tensor up_half(const std::vector<std::shared_ptr<Block>>& up, torch::Tensor h, std::vector<torch::Tensor>& skips,
                      const torch::Tensor& emb, const torch::Tensor& ctx, int64_t F, bool forward_upsample_size) {
  for (size_t bi = 0; bi < up.size(); ++bi) {
    auto& b = up[bi];
    const size_t k = b->res.size();
    std::vector<torch::Tensor> res(skips.end() - static_cast<std::ptrdiff_t>(k), skips.end());
    skips.resize(skips.size() - k);
    std::optional<std::vector<int64_t>> up_size;
    if (bi + 1 < up.size() && forward_upsample_size) up_size = skips.back().sizes().slice(2).vec();
    for (size_t i = 0; i < k; ++i) {
      h = torch::cat({h, res[k - 1 - i]}, 1);
      h = b->layer(i, h, emb, ctx, F);
    }
    if (!b->up.is_empty()) h = b->up(h, up_size);
  }
  return h;
}

/// [B, C, F, H, W] to [B * F, C, H, W], frame-major: the frames as a batch of images.
inline torch::Tensor to_frames(const torch::Tensor& sample) {
  return sample.permute({0, 2, 1, 3, 4}).reshape({sample.size(0) * sample.size(2), -1, sample.size(3), sample.size(4)});
}

/// [B * F, C, H, W] (frame-major) back to [B, C, F, H, W].
inline torch::Tensor to_video(const torch::Tensor& h, int64_t B, int64_t F) {
  return h.reshape({B, F, h.size(1), h.size(2), h.size(3)}).permute({0, 2, 1, 3, 4});
}

}  // namespace mcm::models::unet_common
