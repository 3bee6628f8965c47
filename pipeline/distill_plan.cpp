// `mcm distill --dry-run`: after the resolved configuration, what the run will be, without weights
// or data: the teacher's structure (its config.json, or the published structure of its kind when
// the folder is not there), built on the meta device for its parameter counts with the student's
// LoRA attached, the memory every GPU holds before activations (weights, gradients, AdamW state),
// and the batch split over the Slurm allocation ([slurm] nodes x ranks per node), which must divide.
#include <filesystem>
#include <iostream>

#include "core/error.hpp"
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
#include "train/train_config.hpp"

namespace mcm::stages {
namespace {
namespace stdfs = std::filesystem;
using json = nlohmann::json;

// The teacher as the run will build it, on the meta device; `source` says where its structure came from.
models::VideoUnet teacher_structure(const config::Config& cfg, std::string& source) {
  const auto& tm = cfg.models.teacher;
  models::layers::MetaConstruction meta;
  if (tm.path.empty()) {
    // The embedded teacher: [teacher] at prep's latent shape.
    const auto& ae = cfg.models.autoencoder;
    const auto& te = cfg.models.text_encoder;
    const bool kl = ae.kind == "autoencoder_kl";
    const int64_t channels = kl ? 4 : 3 * ae.factor * ae.factor, down = kl ? 8 : ae.factor;
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

  // The discriminator's own frozen backbone: DINOv2 (its config.json, or dinov2-base as published,
  // 518 px position table); the teacher backbone is the teacher itself.
  int64_t dino = 0;
  std::string dino_from;
  if (dc.disc_weight > 0 && dc.disc_backbone == "dinov2") {
    models::Dinov2Config dcfg;
    dcfg.image_size = 518;
    dino_from = "dinov2-base as published";
    if (stdfs::is_regular_file(stdfs::path(dc.disc_backbone_path) / "config.json")) {
      dcfg = models::Dinov2Config::from_json(models::read_config_json(dc.disc_backbone_path),
                                             stdfs::path(dc.disc_backbone_path) / "config.json");
      dino_from = (stdfs::path(dc.disc_backbone_path) / "config.json").string();
    }
    models::Dinov2 d(dcfg);  // torch's Linear layers: ~0.35 GB for the base model, freed at once
    for (auto& p : d->parameters()) dino += p.numel();
  }

  // Per GPU, before activations: the frozen teacher and the student as the stage loads them (fp32
  // weights; autocast computes in train.precision), the DINOv2 backbone in fp32, LoRA gradients
  // and AdamW's two moments in fp32.
  const std::string precision = train::resolve_precision(cfg.section<train::TrainSection>(), /*cuda=*/true);
  const double weights = 2.0 * 4.0 * static_cast<double>(total) + 4.0 * static_cast<double>(lora + dino);
  const double optimizer = (4.0 + 8.0) * static_cast<double>(lora);

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
  if (divides) std::cout << " x " << dc.optim.batch / per_pass << " accumulation step(s)\n";
  else std::cout << ": NOT a multiple of " << per_pass << "\n";
  std::cout << "memory per GPU before activations: " << gib(weights + optimizer) << " (teacher, student and backbone weights "
            << gib(weights) << ", LoRA gradients and AdamW state " << gib(optimizer) << "); compute in " << precision
            << "; activations of " << dc.optim.micro_batch << " clip(s) per pass come on top (not estimated)\n";
  if (!divides) {
    std::cerr << "mcm distill: distill.batch = " << dc.optim.batch << " is not a multiple of " << world_from
              << " x distill.micro_batch = " << dc.optim.micro_batch << " (" << per_pass
              << "): every rank must take whole micro-batches\n";
    return 2;
  }
  return 0;
}

}  // namespace

MCM_STAGE_DRY_RUN("distill", dry_run_distill);

}  // namespace mcm::stages
