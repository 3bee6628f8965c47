// The frame discriminator's heads, losses and penalty (see frame_discriminator.hpp).
#include "models/frame_discriminator.hpp"

#include <cmath>

#include "core/error.hpp"

namespace mcm::models {
namespace F = torch::nn::functional;

namespace {
torch::Tensor normalize(const torch::Tensor& x) { return x / x.norm().clamp_min(1e-12); }
}  // namespace

SpectralConv1dImpl::SpectralConv1dImpl(int64_t in, int64_t out, int64_t kernel, bool circular)
    : kernel_(kernel), circular_(circular) {
  require<ConfigError>(in > 0 && out > 0 && kernel > 0 && kernel % 2 == 1, "spectral conv: bad shape ", in, " -> ", out,
                       " kernel ", kernel, " (odd kernels only)");
  // torch.nn.Conv1d's initialisation (kaiming uniform a = sqrt(5), bias U(-1/sqrt(fan_in), ..)).
  const double bound = 1.0 / std::sqrt(static_cast<double>(in * kernel));
  weight_orig = register_parameter("weight_orig", torch::empty({out, in, kernel}).uniform_(-bound, bound));
  bias = register_parameter("bias", torch::empty({out}).uniform_(-bound, bound));
  weight_u = register_buffer("weight_u", normalize(torch::randn({out})));
  weight_v = register_buffer("weight_v", normalize(torch::randn({in * kernel})));
  for (int i = 0; i < 15; ++i) power_iteration();  // as torch's spectral_norm parametrisation at creation
}

void SpectralConv1dImpl::power_iteration() {
  torch::NoGradGuard ng;
  auto w = weight_orig.reshape({weight_orig.size(0), -1});
  weight_v.copy_(normalize(torch::mv(w.t(), weight_u)));
  weight_u.copy_(normalize(torch::mv(w, weight_v)));
}

torch::Tensor SpectralConv1dImpl::forward(const torch::Tensor& x) {
  auto w = weight_orig.reshape({weight_orig.size(0), -1});
  auto sigma = torch::dot(weight_u.to(w.scalar_type()), torch::mv(w, weight_v.to(w.scalar_type())));
  auto weight = weight_orig / sigma;
  const int64_t p = kernel_ / 2;
  torch::Tensor h = x;
  if (p > 0) {
    const int64_t L = x.size(2);
    if (circular_) {
      // Wrap-around indices (-p .. L + p - 1) mod L: circular padding for any length, even L < p.
      auto idx = torch::arange(-p, L + p, torch::TensorOptions().dtype(torch::kInt64).device(x.device())).remainder(L);
      h = x.index_select(2, idx);
    } else {
      h = F::pad(x, F::PadFuncOptions({p, p}));
    }
  }
  return F::conv1d(h, weight.to(h.scalar_type()), F::Conv1dFuncOptions().bias(bias.to(h.scalar_type())));
}

BatchNormLocalImpl::BatchNormLocalImpl(int64_t channels, int64_t virtual_batch) : virtual_batch_(virtual_batch) {
  require<ConfigError>(channels > 0 && virtual_batch > 0, "local batch norm: channels ", channels, ", virtual batch ",
                       virtual_batch, " must be positive");
  weight = register_parameter("weight", torch::ones({channels}));
  bias = register_parameter("bias", torch::zeros({channels}));
}

torch::Tensor BatchNormLocalImpl::forward(const torch::Tensor& x) {
  require<DataError>(x.dim() == 3 && x.size(1) == weight.size(0), "local batch norm: expected [N, ", weight.size(0),
                     ", L], got ", x.sizes());
  const int64_t N = x.size(0), G = (N + virtual_batch_ - 1) / virtual_batch_;
  require<DataError>(N % G == 0, "local batch norm: ", N, " frames do not split into ", G, " equal groups of at most ",
                     virtual_batch_, "; use a frame count (micro_batch x disc_frames) that does");
  auto g = x.reshape({G, N / G, x.size(1), x.size(2)});
  auto mean = g.mean({1, 3}, true);
  auto var = (g - mean).pow(2).mean({1, 3}, true);
  auto y = ((g - mean) / torch::sqrt(var + 1e-5)).reshape(x.sizes());
  return y * weight.view({1, -1, 1}).to(y.scalar_type()) + bias.view({1, -1, 1}).to(y.scalar_type());
}

DiscHeadImpl::DiscHeadImpl(const DiscHeadOptions& o) : o_(o) {
  require<ConfigError>(o.cmap_dim > 0 && o.text_dim > 0, "discriminator head: cmap_dim ", o.cmap_dim, " and text_dim ",
                       o.text_dim, " must be positive");
  conv0 = register_module("conv0", SpectralConv1d(o.channels, o.channels, 1, true));
  bn0 = register_module("bn0", BatchNormLocal(o.channels, o.virtual_batch));
  conv1 = register_module("conv1", SpectralConv1d(o.channels, o.channels, 9, true));
  bn1 = register_module("bn1", BatchNormLocal(o.channels, o.virtual_batch));
  cls = register_module("cls", SpectralConv1d(o.channels, o.cmap_dim, 1, true));
  cmapper = register_module("cmapper", torch::nn::Linear(o.text_dim, o.cmap_dim));
}

torch::Tensor DiscHeadImpl::forward(const torch::Tensor& x, const torch::Tensor& c) {
  require<DataError>(x.dim() == 3 && x.size(1) == o_.channels && c.dim() == 2 && c.size(0) == x.size(0) &&
                         c.size(1) == o_.text_dim,
                     "discriminator head: expected features [N, ", o_.channels, ", L] and text [N, ", o_.text_dim,
                     "], got ", x.sizes(), " and ", c.sizes());
  auto h = F::leaky_relu(bn0(conv0(x)), F::LeakyReLUFuncOptions().negative_slope(0.2));
  h = (h + F::leaky_relu(bn1(conv1(h)), F::LeakyReLUFuncOptions().negative_slope(0.2))) * (1.0 / std::sqrt(2.0));
  auto out = cls(h);                                    // [N, cmap, L]
  auto cmap = cmapper(c.to(cmapper->weight.scalar_type())).unsqueeze(-1);  // [N, cmap, 1]
  return (out * cmap.to(out.scalar_type())).sum(1) * (1.0 / std::sqrt(static_cast<double>(o_.cmap_dim)));
}

FrameDiscriminatorImpl::FrameDiscriminatorImpl(const std::vector<int64_t>& channels, int64_t text_dim, int64_t cmap_dim,
                                               int64_t virtual_batch) {
  require<ConfigError>(!channels.empty(), "frame discriminator: the backbone gives no feature levels");
  auto list = register_module("heads", torch::nn::ModuleList());
  for (auto ch : channels) {
    DiscHead h(DiscHeadOptions{ch, text_dim, cmap_dim, virtual_batch});
    list->push_back(h);
    heads_.push_back(h);
  }
}

torch::Tensor FrameDiscriminatorImpl::forward(const std::vector<torch::Tensor>& features, const torch::Tensor& c) {
  require<DataError>(features.size() == heads_.size(), "frame discriminator: ", features.size(),
                     " feature levels for ", heads_.size(), " heads");
  std::vector<torch::Tensor> logits;
  for (size_t l = 0; l < heads_.size(); ++l) logits.push_back(heads_[l]->forward(features[l], c));
  return torch::cat(logits, 1);
}

void FrameDiscriminatorImpl::power_iteration() {
  for (auto& m : modules(false))
    if (auto* s = m->as<SpectralConv1dImpl>()) s->power_iteration();
}

torch::Tensor hinge_d_loss(const torch::Tensor& real_logits, const torch::Tensor& fake_logits) {
  return torch::relu(1.0 - real_logits).mean() + torch::relu(1.0 + fake_logits).mean();
}

torch::Tensor hinge_g_loss(const torch::Tensor& fake_logits) { return -fake_logits.mean(); }

torch::Tensor gradient_penalty(FrameDiscriminator& d, const std::vector<torch::Tensor>& real,
                               const std::vector<torch::Tensor>& fake, const torch::Tensor& c, const torch::Tensor& alpha) {
  require<DataError>(real.size() == fake.size() && !real.empty(), "gradient penalty: ", real.size(), " real and ",
                     fake.size(), " fake feature levels");
  std::vector<torch::Tensor> mix;
  for (size_t l = 0; l < real.size(); ++l) {
    auto a = alpha.to(real[l].device(), real[l].scalar_type()).view({-1, 1, 1});
    mix.push_back((a * real[l].detach() + (1.0 - a) * fake[l].detach()).requires_grad_(true));
  }
  auto out = d->forward(mix, c);
  auto grads = torch::autograd::grad({out.sum()}, mix, {}, /*retain_graph=*/true, /*create_graph=*/true);
  torch::Tensor sq;
  for (auto& g : grads) {
    auto s = g.pow(2).flatten(1).sum(1);
    sq = sq.defined() ? sq + s : s;
  }
  return (torch::sqrt(sq) - 1.0).pow(2).mean();
}

double GpWeightRule::next(double weight, double gp, int64_t step, int64_t& last_raise) const {
  if (gp > threshold && (last_raise < 0 || step - last_raise >= min_interval)) {
    last_raise = step;
    return weight * factor;
  }
  return weight;
}

}  // namespace mcm::models
