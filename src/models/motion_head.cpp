// Motion representations: the learned head and the fixed ablations (see motion_head.hpp).
#include "models/motion_head.hpp"

#include "core/error.hpp"

namespace mcm::models {

MotionKind parse_motion_kind(const std::string& s, const std::string& key) {
  if (s == "raw") return MotionKind::raw;
  if (s == "diff") return MotionKind::diff;
  if (s == "freq") return MotionKind::freq;
  if (s == "learn") return MotionKind::learn;
  throw ConfigError(cat(key, " = \"", s, "\": no such motion representation (raw, diff, freq or learn)"));
}

const char* to_string(MotionKind k) {
  switch (k) {
    case MotionKind::raw: return "raw";
    case MotionKind::diff: return "diff";
    case MotionKind::freq: return "freq";
    case MotionKind::learn: return "learn";
  }
  return "?";
}

MotionHeadImpl::MotionHeadImpl(const MotionHeadConfig& cfg) : cfg_(cfg) {
  require<ConfigError>(cfg.channels > 0 && cfg.hidden > 0 && cfg.groups > 0 && cfg.hidden % cfg.groups == 0,
                       "motion head: hidden (", cfg.hidden, ") must be a positive multiple of groups (", cfg.groups, ")");
  conv1 = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(cfg.channels, cfg.hidden, 1)));
  norm = register_module("norm", torch::nn::GroupNorm(torch::nn::GroupNormOptions(cfg.groups, cfg.hidden).eps(1e-5)));
  conv2 = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(cfg.hidden, cfg.channels, 1)));
  torch::NoGradGuard ng;
  conv2->weight.zero_();  // the identity at start: the loss begins as plain LCM's
  conv2->bias.zero_();
}

torch::Tensor MotionHeadImpl::forward(const torch::Tensor& x) {
  require<DataError>(x.dim() == 5 && x.size(1) == cfg_.channels, "motion head: expected [B, ", cfg_.channels,
                     ", T, H, W] latents, got ", x.sizes());
  const auto B = x.size(0), C = x.size(1), T = x.size(2), H = x.size(3), W = x.size(4);
  auto frames = x.permute({0, 2, 1, 3, 4}).reshape({B * T, C, H, W});
  auto h = conv2(torch::silu(norm(conv1(torch::silu(frames)))));
  return x + h.reshape({B, T, C, H, W}).permute({0, 2, 1, 3, 4});
}

torch::Tensor temporal_difference(const torch::Tensor& x) {
  require<DataError>(x.dim() == 5 && x.size(2) >= 2, "temporal difference: expected [B, C, T >= 2, H, W], got ", x.sizes());
  return x.slice(2, 1) - x.slice(2, 0, -1);
}

torch::Tensor butterworth_mask(int64_t frames, int64_t height, int64_t width, double cutoff, int64_t order, bool high_pass) {
  require<ConfigError>(cutoff > 0 && order > 0, "Butterworth mask: cutoff (", cutoff, ") and order (", order,
                       ") must be positive");
  auto axis = [](int64_t n) {  // 2k / n - 1, k = 0 .. n-1
    return torch::arange(n, torch::kFloat64) * (2.0 / static_cast<double>(n)) - 1.0;
  };
  auto t = axis(frames).view({frames, 1, 1}), h = axis(height).view({1, height, 1}), w = axis(width).view({1, 1, width});
  auto d2 = t * t + h * h + w * w;
  auto low = 1.0 / (1.0 + (d2 / (cutoff * cutoff)).pow(static_cast<double>(order)));
  return (high_pass ? 1.0 - low : low).to(torch::kFloat32);
}

torch::Tensor frequency_filter(const torch::Tensor& x, const torch::Tensor& mask) {
  require<DataError>(x.dim() >= 3 && mask.dim() == 3 && x.sizes().slice(x.dim() - 3) == mask.sizes(),
                     "frequency filter: mask ", mask.sizes(), " does not fit the last three dims of ", x.sizes());
  const std::vector<int64_t> dims{-3, -2, -1};
  const auto dtype = x.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  auto f = torch::fft::fftshift(torch::fft::fftn(x.to(dtype), std::nullopt, dims), dims);
  f = f * mask.to(x.device(), dtype);
  return torch::real(torch::fft::ifftn(torch::fft::ifftshift(f, dims), std::nullopt, dims));
}

torch::Tensor MotionRepresentation::operator()(const torch::Tensor& x, MotionHead head) {
  switch (opt_.kind) {
    case MotionKind::raw: return x;
    case MotionKind::diff: return temporal_difference(x);
    case MotionKind::freq: {
      const auto T = x.size(-3), H = x.size(-2), W = x.size(-1);
      if (!mask_.defined() || mask_.size(0) != T || mask_.size(1) != H || mask_.size(2) != W || mask_.device() != x.device())
        mask_ = butterworth_mask(T, H, W, opt_.freq_cutoff, opt_.freq_order, opt_.freq_high_pass).to(x.device());
      return frequency_filter(x, mask_);
    }
    case MotionKind::learn:
      require<ConfigError>(!head.is_empty(), "motion representation `learn` needs a motion head");
      return head->forward(x);
  }
  return x;
}

}  // namespace mcm::models
