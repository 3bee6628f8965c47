// AutoencoderKL with diffusers' structure, names and forward (vae.py / autoencoder_kl.py).
#include "models/autoencoder_kl.hpp"

#include "core/rng.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include "core/checksum.hpp"
#include "core/error.hpp"
#include "models/weights.hpp"

namespace mcm::models {
namespace nn = torch::nn;
namespace stdfs = std::filesystem;
using namespace layers;

AutoencoderKLConfig AutoencoderKLConfig::from_json(const nlohmann::json& doc, const stdfs::path& file) {
  ConfigReader r(doc, file);
  AutoencoderKLConfig c;
  if (r.has("_class_name") && r.string("_class_name") != "AutoencoderKL")
    r.fail("_class_name", cat("expected AutoencoderKL, got ", r.string("_class_name")));
  c.in_channels = r.integer("in_channels", c.in_channels);
  c.out_channels = r.integer("out_channels", c.out_channels);
  c.block_out_channels = r.integers("block_out_channels", c.block_out_channels);
  c.layers_per_block = r.integer("layers_per_block", c.layers_per_block);
  c.latent_channels = r.integer("latent_channels", c.latent_channels);
  c.norm_num_groups = r.integer("norm_num_groups", c.norm_num_groups);
  if (r.has("sample_size") && !doc.at("sample_size").is_array()) c.sample_size = r.integer("sample_size");
  c.scaling_factor = r.number("scaling_factor", c.scaling_factor);
  if (r.has("shift_factor")) c.shift_factor = r.number("shift_factor");
  c.use_quant_conv = r.boolean("use_quant_conv", true);
  c.use_post_quant_conv = r.boolean("use_post_quant_conv", true);
  c.mid_block_add_attention = r.boolean("mid_block_add_attention", true);
  c.force_upcast = r.boolean("force_upcast", true);
  if (r.string("act_fn", "silu") != "silu") r.fail("act_fn", "only \"silu\" is supported");
  if (r.has("latents_mean")) r.fail("latents_mean", "per-channel latent statistics are not supported");
  const size_t n = c.block_out_channels.size();
  if (n == 0) r.fail("block_out_channels", "empty");
  for (const char* k : {"in_channels", "out_channels", "latent_channels", "norm_num_groups", "layers_per_block"})
    if (r.integer(k, 1) < 1) r.fail(k, "must be >= 1");
  for (const auto& t : r.strings("down_block_types", std::vector<std::string>(n, "DownEncoderBlock2D")))
    if (t != "DownEncoderBlock2D") r.fail("down_block_types", cat("unknown block type ", t));
  for (const auto& t : r.strings("up_block_types", std::vector<std::string>(n, "UpDecoderBlock2D")))
    if (t != "UpDecoderBlock2D") r.fail("up_block_types", cat("unknown block type ", t));
  if (r.strings("down_block_types", std::vector<std::string>(n, "")).size() != n)
    r.fail("down_block_types", cat("expected ", n, " blocks (one per block_out_channels)"));
  if (r.strings("up_block_types", std::vector<std::string>(n, "")).size() != n)
    r.fail("up_block_types", cat("expected ", n, " blocks (one per block_out_channels)"));
  for (int64_t ch : c.block_out_channels)
    if (ch <= 0 || ch % c.norm_num_groups != 0)
      r.fail("block_out_channels", cat(ch, " is not a positive multiple of norm_num_groups ", c.norm_num_groups));
  return c;
}

nlohmann::json AutoencoderKLConfig::to_json() const {
  const size_t n = block_out_channels.size();
  return {{"_class_name", "AutoencoderKL"},
          {"_diffusers_version", "0.42.1"},
          {"act_fn", "silu"},
          {"block_out_channels", block_out_channels},
          {"down_block_types", std::vector<std::string>(n, "DownEncoderBlock2D")},
          {"up_block_types", std::vector<std::string>(n, "UpDecoderBlock2D")},
          {"in_channels", in_channels},
          {"out_channels", out_channels},
          {"latent_channels", latent_channels},
          {"layers_per_block", layers_per_block},
          {"norm_num_groups", norm_num_groups},
          {"sample_size", sample_size},
          {"scaling_factor", scaling_factor},
          {"shift_factor", shift_factor ? nlohmann::json(*shift_factor) : nlohmann::json(nullptr)},
          {"use_quant_conv", use_quant_conv},
          {"use_post_quant_conv", use_post_quant_conv},
          {"mid_block_add_attention", mid_block_add_attention},
          {"force_upcast", force_upcast}};
}

/// Encoder or Decoder of vae.py: conv_in, blocks, mid_block (resnet, attention, resnet),
/// conv_norm_out, SiLU, conv_out.
struct AutoencoderKLImpl::Coder : nn::Module {
  struct Stage : nn::Module {
    std::vector<ResnetBlock2D> res;
    Downsample2D down{nullptr};
    Upsample2D up{nullptr};
  };
  struct Mid : nn::Module {
    std::vector<ResnetBlock2D> res;
    Attention attn{nullptr};
  };
  Conv2d conv_in{nullptr}, conv_out{nullptr};
  nn::GroupNorm conv_norm_out{nullptr};
  std::vector<std::shared_ptr<Stage>> stages;
  std::shared_ptr<Mid> mid;

  Coder(const AutoencoderKLConfig& c, bool is_encoder) {
    const auto& boc = c.block_out_channels;
    const size_t n = boc.size();
    const int64_t g = c.norm_num_groups;
    conv_in = register_module("conv_in", is_encoder ? conv2d(c.in_channels, boc[0], 3, 1, 1)
                                                    : conv2d(c.latent_channels, boc.back(), 3, 1, 1));
    auto make_mid = [&] {
      mid = std::make_shared<Mid>();
      const int64_t ch = boc.back();
      mid->res.push_back(ResnetBlock2D(ch, ch, 0, g, 1e-6));
      if (c.mid_block_add_attention) {
        AttentionOptions a;
        a.query_dim = ch;
        a.heads = 1;
        a.dim_head = ch;
        a.qkv_bias = true;
        a.group_norm_groups = g;
        a.group_norm_eps = 1e-6;
        a.residual = true;
        mid->attn = Attention(a);
        mid->register_module("attentions", nn::ModuleList(mid->attn));
      }
      mid->res.push_back(ResnetBlock2D(ch, ch, 0, g, 1e-6));
      auto l = mid->register_module("resnets", nn::ModuleList());
      for (auto& r : mid->res) l->push_back(r);
    };
    auto blocks = nn::ModuleList();
    if (is_encoder) {
      int64_t out = boc[0];
      for (size_t i = 0; i < n; ++i) {
        const int64_t in = out;
        out = boc[i];
        auto s = std::make_shared<Stage>();
        for (int64_t l = 0; l < c.layers_per_block; ++l) s->res.push_back(ResnetBlock2D(l == 0 ? in : out, out, 0, g, 1e-6));
        auto rl = s->register_module("resnets", nn::ModuleList());
        for (auto& r : s->res) rl->push_back(r);
        if (i + 1 < n) {
          s->down = Downsample2D(out, 0);
          s->register_module("downsamplers", nn::ModuleList(s->down));
        }
        blocks->push_back(s);
        stages.push_back(s);
      }
      register_module("down_blocks", blocks);
      make_mid();
      register_module("mid_block", mid);
      conv_norm_out = register_module("conv_norm_out", group_norm(g, boc.back(), 1e-6));
      conv_out = register_module("conv_out", conv2d(boc.back(), 2 * c.latent_channels, 3, 1, 1));
    } else {
      make_mid();
      register_module("mid_block", mid);
      std::vector<int64_t> rev(boc.rbegin(), boc.rend());
      int64_t out = rev[0];
      for (size_t i = 0; i < n; ++i) {
        const int64_t prev = out;
        out = rev[i];
        auto s = std::make_shared<Stage>();
        for (int64_t l = 0; l < c.layers_per_block + 1; ++l)
          s->res.push_back(ResnetBlock2D(l == 0 ? prev : out, out, 0, g, 1e-6));
        auto rl = s->register_module("resnets", nn::ModuleList());
        for (auto& r : s->res) rl->push_back(r);
        if (i + 1 < n) {
          s->up = Upsample2D(out);
          s->register_module("upsamplers", nn::ModuleList(s->up));
        }
        blocks->push_back(s);
        stages.push_back(s);
      }
      register_module("up_blocks", blocks);
      conv_norm_out = register_module("conv_norm_out", group_norm(g, boc[0], 1e-6));
      conv_out = register_module("conv_out", conv2d(boc[0], c.out_channels, 3, 1, 1));
    }
  }

  torch::Tensor run_mid(torch::Tensor h) {
    h = mid->res[0](h);
    if (!mid->attn.is_empty()) h = mid->attn(h);
    return mid->res[1](h);
  }

  torch::Tensor encode(const torch::Tensor& x) {
    auto h = conv_in(x);
    for (auto& s : stages) {
      for (auto& r : s->res) h = r(h);
      if (!s->down.is_empty()) h = s->down(h);
    }
    h = run_mid(h);
    return conv_out(torch::silu(conv_norm_out(h)));
  }

  torch::Tensor decode(const torch::Tensor& z) {
    auto h = conv_in(z);
    h = run_mid(h);
    for (auto& s : stages) {
      for (auto& r : s->res) h = r(h);
      if (!s->up.is_empty()) h = s->up(h);
    }
    return conv_out(torch::silu(conv_norm_out(h)));
  }
};

AutoencoderKLImpl::AutoencoderKLImpl(const AutoencoderKLConfig& c) : cfg_(c) {
  encoder_ = register_module("encoder", std::make_shared<Coder>(c, true));
  decoder_ = register_module("decoder", std::make_shared<Coder>(c, false));
  if (c.use_quant_conv)
    quant_conv = register_module("quant_conv", conv2d(2 * c.latent_channels, 2 * c.latent_channels, 1));
  if (c.use_post_quant_conv)
    post_quant_conv = register_module("post_quant_conv", conv2d(c.latent_channels, c.latent_channels, 1));
}

std::pair<torch::Tensor, torch::Tensor> AutoencoderKLImpl::encode_moments(const torch::Tensor& x) {
  require<DataError>(x.dim() == 4 && x.size(1) == cfg_.in_channels, "AutoencoderKL: expected [N, ", cfg_.in_channels,
                     ", H, W], got ", x.sizes());
  auto h = encoder_->encode(x);
  if (!quant_conv.is_empty()) h = quant_conv(h);
  auto parts = h.chunk(2, 1);
  return {parts[0], torch::clamp(parts[1], -30.0, 20.0)};
}

torch::Tensor AutoencoderKLImpl::decode_raw(const torch::Tensor& z) {
  require<DataError>(z.dim() == 4 && z.size(1) == cfg_.latent_channels, "AutoencoderKL: expected latents [N, ",
                     cfg_.latent_channels, ", h, w], got ", z.sizes());
  return decoder_->decode(post_quant_conv.is_empty() ? z : post_quant_conv(z));
}

VaeFrameAutoencoder::VaeFrameAutoencoder(AutoencoderKL vae, Mode mode, int64_t slice_frames, std::string source)
    : vae_(std::move(vae)), mode_(mode), slice_(slice_frames), source_(std::move(source)) {
  require<ConfigError>(slice_ >= 1, "autoencoder slice_frames must be >= 1, got ", slice_);
  vae_->eval();
  for (auto& p : vae_->parameters()) p.set_requires_grad(false);  // frozen: an encoder here, never trained
  hash_ = source_.empty() ? "" : folder_checksum(source_);
}

void VaeFrameAutoencoder::place(torch::Device device, torch::ScalarType dtype) {
  if (vae_->config().force_upcast) dtype = torch::kFloat32;
  vae_->to(device, dtype);
}

torch::Tensor VaeFrameAutoencoder::encode_frames(const torch::Tensor& frames, const std::vector<uint64_t>& frame_seeds) {
  torch::NoGradGuard ng;
  require<DataError>(mode_ == Mode::Mean || static_cast<int64_t>(frame_seeds.size()) == frames.size(0),
                     "AutoencoderKL encode: ", frame_seeds.size(), " seeds for ", frames.size(0), " frames");
  const auto& c = vae_->config();
  auto dtype = vae_->parameters().front().scalar_type();
  auto device = vae_->parameters().front().device();
  std::vector<torch::Tensor> out;
  for (int64_t s = 0; s < frames.size(0); s += slice_) {
    auto x = frames.slice(0, s, std::min(frames.size(0), s + slice_)).to(device, dtype);
    auto [mean, logvar] = vae_->encode_moments(x);
    torch::Tensor z = mean;
    if (mode_ == Mode::Sample) {
      // Each frame's noise from its own stream of the RNG scheme, keyed by the caller's 64-bit
      // seed (prep: sample key, window, frame), drawn on the CPU: latents do not depend on the
      // device, the rank, the batch or the order (torch's CPU generator keeps only 32 seed bits).
      auto eps = torch::empty(mean.sizes(), torch::kFloat32);
      const int64_t per_frame = eps.numel() / std::max<int64_t>(1, eps.size(0));
      for (int64_t i = 0; i < mean.size(0); ++i)
        rng::fill_normal(rng::key(frame_seeds[static_cast<size_t>(s + i)], "vae_posterior", 0),
                         0, eps[i].data_ptr<float>(), static_cast<size_t>(per_frame));
      z = mean + torch::exp(0.5 * logvar) * eps.to(device, mean.scalar_type());
    }
    if (c.shift_factor) z = z - *c.shift_factor;
    out.push_back((z * c.scaling_factor).to(torch::kFloat32).cpu());
  }
  return torch::cat(out);
}

torch::Tensor VaeFrameAutoencoder::decode(const torch::Tensor& latents) {
  torch::NoGradGuard ng;
  const auto& c = vae_->config();
  auto dtype = vae_->parameters().front().scalar_type();
  auto device = vae_->parameters().front().device();
  std::vector<torch::Tensor> out;
  for (int64_t s = 0; s < latents.size(0); s += slice_) {
    auto z = latents.slice(0, s, std::min(latents.size(0), s + slice_)).to(device, dtype) / c.scaling_factor;
    if (c.shift_factor) z = z + *c.shift_factor;
    out.push_back(vae_->decode_raw(z).to(torch::kFloat32).cpu());
  }
  return torch::cat(out);
}

torch::Tensor VaeFrameAutoencoder::decode_differentiable(const torch::Tensor& latents) {
  const auto& c = vae_->config();
  const auto dtype = vae_->parameters().front().scalar_type();
  auto z = latents.to(dtype) / c.scaling_factor;
  if (c.shift_factor) z = z + *c.shift_factor;
  return vae_->decode_raw(z).to(latents.scalar_type());
}

std::string VaeFrameAutoencoder::name() const {
  return cat("autoencoder_kl(", mode_ == Mode::Mean ? "mean" : "sample", ",latent=", latent_channels(),
             ",f=", downsample(), ")");
}

AutoencoderKL load_autoencoder_kl(const stdfs::path& folder, torch::ScalarType dtype) {
  auto cfg = AutoencoderKLConfig::from_json(read_config_json(folder), folder / "config.json");
  AutoencoderKL vae(cfg);
  load_folder_weights(*vae, folder, dtype);
  return vae;
}

}  // namespace mcm::models
