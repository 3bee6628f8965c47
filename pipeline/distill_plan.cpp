// `mcm distill --dry-run`: after the resolved configuration, what the run will be, without weights
// or data: the teacher's structure (its config.json, or the published structure of its kind when
// the folder is not there), built on the meta device for its parameter counts with the student's
// LoRA attached, the memory every GPU holds (weights, gradients, AdamW state, and the activations
// of a micro-batch, measured: Note [activation estimate]), and the batch split over the Slurm
// allocation ([slurm] nodes x ranks per node), which must divide.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <optional>
#include <thread>

#include "core/error.hpp"
#include "models/autoencoder_kl.hpp"
#include "models/dinov2.hpp"
#include "models/layers.hpp"
#include "models/lora.hpp"
#include "models/unet3d.hpp"
#include "models/unet_motion.hpp"
#include "models/weights.hpp"
#include "pipeline/distill_config.hpp"
#include "pipeline/teacher_config.hpp"
#include "pipeline/teacher_model.hpp"
#include "stages/stage_table.hpp"
#include "train/memory.hpp"
#include "train/train_config.hpp"

namespace mcm::stages {
namespace {
namespace stdfs = std::filesystem;
using json = nlohmann::json;

// The autoencoder's spatial downsampling: prep's frames to the UNet's latents.
int64_t latent_downsample(const config::Config& cfg) {
  const auto& ae = cfg.models.autoencoder;
  return ae.kind == "autoencoder_kl" ? 8 : ae.factor;
}

// DINOv2's structure for the discriminator: its config.json, or dinov2-base as published (518 px
// position table); `from` says which.
models::Dinov2Config dinov2_structure(const DistillSection& dc, std::string* from = nullptr) {
  const stdfs::path folder = dc.disc_backbone_path;
  if (stdfs::is_regular_file(folder / "config.json")) {
    if (from) *from = (folder / "config.json").string();
    return models::Dinov2Config::from_json(models::read_config_json(folder), folder / "config.json");
  }
  if (from) *from = "dinov2-base as published";
  models::Dinov2Config c;
  c.image_size = 518;
  return c;
}

// The teacher as the run will build it, on the meta device (or with real CPU weights, for the
// activation measurement); `source` says where its structure came from.
models::VideoUnet teacher_structure(const config::Config& cfg, std::string& source, bool on_meta = true) {
  const auto& tm = cfg.models.teacher;
  std::optional<models::layers::MetaConstruction> meta;
  if (on_meta) meta.emplace();
  if (tm.path.empty()) {
    // The embedded teacher: [teacher] at prep's latent shape.
    const auto& ae = cfg.models.autoencoder;
    const auto& te = cfg.models.text_encoder;
    const bool kl = ae.kind == "autoencoder_kl";
    const int64_t channels = kl ? 4 : 3 * ae.factor * ae.factor, down = latent_downsample(cfg);
    int64_t text_dim = te.dim;
    if (te.kind == "clip") {
      text_dim = 768;
      if (stdfs::is_regular_file(stdfs::path(te.path) / "config.json"))
        text_dim = models::read_config_json(te.path).value("hidden_size", int64_t{768});
    }
    const auto json = cfg.to_json();
    const int64_t resolution = json["prep"]["resolution"].get<int64_t>();
    source = cat("the embedded teacher ([teacher] at ", channels, " x ", resolution / down, "^2 latents, ", text_dim,
                 "-wide text)");
    return make_teacher_unet(cfg.section<TeacherSection>(), tm.kind, channels, resolution / down, text_dim);
  }
  const stdfs::path folder = tm.path;
  if (stdfs::is_regular_file(folder / "config.json")) {
    source = (folder / "config.json").string();
    if (tm.motion_adapter.empty()) return models::build_video_unet(models::read_config_json(folder), folder / "config.json");
    const stdfs::path adapter = tm.motion_adapter;
    require<ConfigError>(stdfs::is_regular_file(adapter / "config.json"), "models.teacher.motion_adapter = ", adapter,
                         ": no config.json");
    source += " + " + (adapter / "config.json").string();
    const auto adapter_doc = models::read_config_json(adapter);
    return models::build_video_unet(models::read_config_json(folder), folder / "config.json", &adapter_doc,
                                    adapter / "config.json");
  }
  if (tm.kind == "unet_motion") {
    source = cat(folder, " not found: Stable Diffusion 1.5 + motion adapter v1-5-2 as published");
    return models::UnetMotion(models::UnetMotionConfig::sd15_v152()).ptr();
  }
  source = cat(folder, " not found: ModelScopeT2V's UNet3DConditionModel as published");
  return models::Unet3D(models::Unet3DConfig{}).ptr();
}

std::string gib(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  return b;
}

std::string percent(int64_t part, int64_t whole) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f%%", 100.0 * static_cast<double>(part) / static_cast<double>(std::max<int64_t>(1, whole)));
  return b;
}

// Note [activation estimate]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~
// Activations are measured, not modelled. The student (the teacher's structure with real CPU
// weights, fp32 as the stage loads them, LoRA attached and alone trainable) runs forward and
// backward under CPU autocast in the run's precision (fp16 is measured as bf16: the same widths),
// with CUDA autocast's float32 list (train::CudaAutocastPolicyOnCpu: norms, softmax, upsampling
// stay float32, so the tensors backward keeps have a GPU's dtypes), and
// train::peak_cpu_tensor_bytes gives the most tensor storage live at once. Paper-scale latents
// are too big to pass on a few cores, so three small passes fit
//   bytes(n clips, side s) = w + n * (a + b * s^2)
// at (1, d), (1, 2d) and (2, d), d the UNet's total downsampling, and the fit is read at the
// run's micro-batch and latent side. w is what a pass holds once whatever the batch (the
// autocast copies of the frozen weights that backward keeps, the adapters' incoming gradients),
// a what each clip adds at any size (time and text embeddings, the cross-attention keys and
// values), b what scales with the area: every tensor the UNet keeps for backward lives at some
// level of it, and attention through SDPA (flash kernels on CPU and GPU) keeps O(tokens). The fit
// predicts a direct measurement at 4x the largest fitted area and a larger batch to 0.1 MiB
// (tests/train/test_memory.cpp).
// The discriminator's generator pass is alive at the same moment (before the student's backward)
// and is measured the same way on the frames it judges (micro-batch x disc_frames): for dinov2
// the VAE decode with gradient, the resize and DINOv2; for teacher the teacher's encoder on
// one-frame videos. The teacher's guided passes and the target pass run without gradient and are
// freed before; the discriminator's own step runs after the backward. Not counted: cuDNN/cuBLAS
// workspaces, the caching allocator's rounding and fragmentation, NCCL's buffers, the CUDA context.

struct Fitted {
  double bytes = 0;  ///< at the run's shape
  std::string how;   ///< which passes gave it
};

// `pass(n, s)`: peak bytes of one pass of n items at latent side s. Read at (count, side).
Fitted fit_passes(const std::function<double(int64_t, int64_t)>& pass, int64_t unit, int64_t count, int64_t side) {
  Fitted f;
  if (count <= 2 && side <= 2 * unit) {
    f.bytes = pass(count, side);
    f.how = cat("measured at ", count, " x ", side, "^2");
    return f;
  }
  const auto fit = train::PassFit::measure(pass, unit);
  f.bytes = fit.at(count, side);
  f.how = cat("fit through passes at 1 x ", unit, "^2, 1 x ", 2 * unit, "^2 and 2 x ", unit, "^2");
  return f;
}

// Peak bytes of one training pass: `forward` under CPU autocast in `autocast`, a float32 loss of
// its output, and the backward. `student`'s trainable gradients are present and zero first, as
// after the first micro-batch, so every pass counts the same transient incoming gradients and
// none counts their first allocation.
double training_pass_peak(torch::nn::Module& student, const std::string& autocast,
                          const std::function<torch::Tensor()>& forward) {
  for (auto& p : student.parameters())
    if (p.requires_grad()) p.mutable_grad() = torch::zeros_like(p);
  return double(train::peak_cpu_tensor_bytes([&] {
    torch::Tensor loss;
    {
      train::AutocastGuard ag(torch::kCPU, autocast);
      loss = forward().to(torch::kFloat32).square().mean();
    }
    loss.backward();
  }));
}

struct ActivationEstimate {
  Fitted student, discriminator;
  int64_t vae_parameters = 0;  ///< dinov2: the autoencoder the judged frames are decoded by
  double seconds = 0;
};

ActivationEstimate estimate_activations(const config::Config& cfg, const std::string& precision, int64_t frames,
                                        int64_t latent_side) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto& dc = cfg.section<DistillSection>();
  const std::string autocast = precision == "fp32" ? "fp32" : "bf16";  // fp16 measured as bf16: same widths
  train::CudaAutocastPolicyOnCpu cuda_policy;                            // norms and softmax in fp32, as on a GPU
  std::string source;
  auto student = teacher_structure(cfg, source, /*on_meta=*/false);
  student->eval();
  models::LoraConfig lc;
  lc.rank = dc.lora_rank;
  lc.alpha = dc.lora_alpha;
  models::attach_lora(*student, lc);
  models::freeze_all_but_lora(*student);
  const auto shape = student->shape();
  const int64_t unit = int64_t{1} << (shape.block_out_channels.size() - 1);
  const int64_t text_len = cfg.models.text_encoder.kind == "clip" ? 77 : cfg.models.text_encoder.max_length;
  ActivationEstimate e;

  e.student = fit_passes(
      [&](int64_t n, int64_t s) {
        auto x = torch::randn({n, shape.in_channels, frames, s, s});
        auto t = torch::full({n}, 500, torch::kLong);
        auto ctx = torch::randn({n, text_len, shape.cross_attention_dim});
        std::optional<torch::Tensor> cond;
        if (shape.time_cond_proj_dim > 0) cond = torch::randn({n, shape.time_cond_proj_dim});
        return training_pass_peak(*student, autocast, [&] { return student->forward(x, t, ctx, cond); });
      },
      unit, dc.optim.micro_batch, latent_side);

  if (dc.disc_weight > 0) {
    const int64_t judged = dc.optim.micro_batch * dc.disc_frames;
    std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)> features;
    std::optional<models::AutoencoderKL> vae;
    std::optional<models::Dinov2> dino;
    int64_t channels = shape.in_channels, disc_unit = unit;
    if (dc.disc_backbone == "dinov2") {
      // SD's kl-f8 as published when the folder is not there (ModelScope and SD1.5 ship it).
      models::AutoencoderKLConfig vc;
      vc.block_out_channels = {128, 256, 512, 512};
      vc.layers_per_block = 2;
      const stdfs::path vp = cfg.models.autoencoder.path;
      if (!vp.empty() && stdfs::is_regular_file(vp / "config.json"))
        vc = models::AutoencoderKLConfig::from_json(models::read_config_json(vp), vp / "config.json");
      vae.emplace(vc);
      for (auto& p : (*vae)->parameters()) e.vae_parameters += p.numel();
      channels = vc.latent_channels;
      disc_unit = 8;
      const auto dcfg = dinov2_structure(dc);
      dino.emplace(dcfg);
      for (auto& p : (*vae)->parameters()) p.set_requires_grad(false);
      for (auto& p : (*dino)->parameters()) p.set_requires_grad(false);
      const auto layers = models::dinov2_feature_layers(dcfg.num_hidden_layers);
      features = [&, layers](const torch::Tensor& z, const torch::Tensor&) {
        auto px = (*vae)->decode_raw(z);
        px = torch::nn::functional::interpolate(
            px, torch::nn::functional::InterpolateFuncOptions()
                    .size(std::vector<int64_t>{dc.disc_image_size, dc.disc_image_size})
                    .mode(torch::kBilinear)
                    .align_corners(false));
        auto feats = (*dino)->forward(px, layers);
        return torch::cat(feats, 1);
      };
    } else {
      features = [&](const torch::Tensor& z, const torch::Tensor& ctx) {
        auto t = torch::full({z.size(0)}, dc.disc_timestep, torch::kLong);
        auto feats = student->encoder_features(z.unsqueeze(2), t, ctx);
        for (auto& f : feats) f = f.flatten(1);
        return torch::cat(feats, 1);
      };
    }
    e.discriminator = fit_passes(
        [&](int64_t n, int64_t s) {
          auto z = torch::randn({n, channels, s, s}).requires_grad_(true);
          auto ctx = torch::randn({n, text_len, shape.cross_attention_dim});
          return training_pass_peak(*student, autocast, [&] { return features(z, ctx); });
        },
        disc_unit, judged, latent_side);
  }
  e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return e;
}

int dry_run_distill(const config::Config& cfg) {
  const auto& dc = cfg.section<DistillSection>();
  std::string source;
  auto student = teacher_structure(cfg, source);
  int64_t total = 0;
  for (auto& p : student->parameters()) total += p.numel();
  models::LoraConfig lc;
  lc.rank = dc.lora_rank;
  lc.alpha = dc.lora_alpha;
  const auto [adapted, lora] = models::plan_lora(*student, lc);
  int64_t motion_layers = 0;
  for (const auto& n : adapted) motion_layers += n.find(".motion_modules.") != std::string::npos;

  // The batch over the allocation submit.sh asks for ([slurm], when this binary has it).
  const json all = cfg.to_json();
  int64_t world = 1;
  std::string world_from = "1 rank";
  if (all.contains("slurm")) {
    const auto& s = all["slurm"];
    const int64_t per_node = s["gpus_per_node"].get<int64_t>() > 0 ? s["gpus_per_node"].get<int64_t>()
                                                                  : s["tasks_per_node"].get<int64_t>();
    world = s["nodes"].get<int64_t>() * per_node;
    world_from = cat(s["nodes"].get<int64_t>(), " node(s) x ", per_node, " rank(s) ([slurm])");
  }
  const int64_t per_pass = world * dc.optim.micro_batch;
  const bool divides = dc.optim.batch % per_pass == 0;

  // The discriminator's own frozen backbone: DINOv2; the teacher backbone is the teacher itself.
  int64_t dino = 0;
  std::string dino_from;
  if (dc.disc_weight > 0 && dc.disc_backbone == "dinov2") {
    models::Dinov2 d(dinov2_structure(dc, &dino_from));  // torch's Linear layers: ~0.35 GB for the base model, freed at once
    for (auto& p : d->parameters()) dino += p.numel();
  }

  const std::string precision = train::resolve_precision(cfg.section<train::TrainSection>(), /*cuda=*/true);

  std::cout << "\n# mcm distill --dry-run: the run as configured (nothing loaded, nothing written)\n"
            << "teacher: " << student->config_json().value("_class_name", "UNet") << " from " << source << "\n"
            << "  parameters: " << total << " (" << gib(4.0 * static_cast<double>(total)) << " in fp32)\n"
            << "student: the teacher + LoRA rank " << dc.lora_rank << " on " << adapted.size() << " layers ("
            << motion_layers << " in motion modules)\n"
            << "  trainable: " << lora << " LoRA parameters (" << percent(lora, total)
            << " of the teacher), plus the motion head and the discriminator heads\n"
            << (dino > 0 ? cat("discriminator backbone: DINOv2 from ", dino_from, ", ", dino, " parameters (frozen)\n")
                         : std::string())
            << "batch: global " << dc.optim.batch << " = " << world_from << " x micro-batch " << dc.optim.micro_batch;
  if (!divides) {
    std::cout << ": NOT a multiple of " << per_pass << "\n";
    std::cerr << "mcm distill: distill.batch = " << dc.optim.batch << " is not a multiple of " << world_from
              << " x distill.micro_batch = " << dc.optim.micro_batch << " (" << per_pass
              << "): every rank must take whole micro-batches\n";
    return 2;
  }
  std::cout << " x " << dc.optim.batch / per_pass << " accumulation step(s)\n";

  // Activations, measured on this machine's CPU (Note [activation estimate]).
  const int64_t frames = all["prep"]["frames"].get<int64_t>();
  const int64_t side = all["prep"]["resolution"].get<int64_t>() / latent_downsample(cfg);
  torch::set_num_threads(cfg.run.threads > 0 ? static_cast<int>(cfg.run.threads)
                                             : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  const auto act = estimate_activations(cfg, precision, frames, side);
  // Per GPU: the frozen teacher and the student as the stage loads them (fp32 weights; autocast
  // computes in train.precision), the DINOv2 backbone and its autoencoder in fp32, LoRA gradients
  // and AdamW's two moments in fp32, and the activations.
  const double weights =
      2.0 * 4.0 * static_cast<double>(total) + 4.0 * static_cast<double>(lora + dino + act.vae_parameters);
  const double optimizer = (4.0 + 8.0) * static_cast<double>(lora);
  const double peak = weights + optimizer + act.student.bytes + act.discriminator.bytes;
  std::cout << "memory per GPU: " << gib(peak) << " at the peak of a step in " << precision << "\n"
            << "  weights " << gib(weights) << " (teacher and student in fp32, LoRA, backbone and its autoencoder), "
            << "LoRA gradients and AdamW state " << gib(optimizer) << "\n"
            << "  activations of the student's forward and backward, micro-batch " << dc.optim.micro_batch << " x " << frames
            << " frames of " << side << "^2 latents: " << gib(act.student.bytes) << " (" << act.student.how << ")\n";
  if (dc.disc_weight > 0)
    std::cout << "  the discriminator's generator pass (" << dc.optim.micro_batch * dc.disc_frames << " frames, "
              << dc.disc_backbone << " backbone): " << gib(act.discriminator.bytes) << " (" << act.discriminator.how << ")\n";
  std::cout << "  measured in " << (precision == "fp32" ? "fp32" : "bf16") << " CPU autocast passes in "
            << static_cast<int64_t>(std::lround(act.seconds))
            << " s; cuDNN/cuBLAS workspaces, allocator fragmentation and NCCL buffers come on top\n";
  return 0;
}

}  // namespace

MCM_STAGE_DRY_RUN("distill", dry_run_distill);

}  // namespace mcm::stages
