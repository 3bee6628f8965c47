// `mcm teacher`: the embedded default pretrains a small UNet3D teacher on prep's video latents
// (x0, v or epsilon prediction, caption dropout for classifier-free guidance) with the training engine
// (src/train), writes it as a diffusers folder teacher/unet/, and measures whether its 50-step
// guided samples show the captioned colour, shape and motion (teacher/fidelity.json). With
// models.teacher.path set (real runs), it trains nothing: it checks that the weights load and
// fit the latents and text embeddings, and records them by checksum.
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/rng.hpp"
#include "core/signals.hpp"
#include "io/hdf5_store.hpp"
#include "models/weights.hpp"
#include "pipeline/prep_shards.hpp"
#include "pipeline/stages.hpp"
#include "pipeline/teacher_config.hpp"
#include "pipeline/teacher_fidelity.hpp"
#include "pipeline/teacher_model.hpp"
#include "stages/stage_run.hpp"
#include "stages/stage_table.hpp"

namespace mcm::stages {
namespace {
using json = nlohmann::json;
namespace stdfs = std::filesystem;

// Version of the teacher's training algorithm (loss, draws, init): bump when a change alters the
// weights written for the same config and data, so an old teacher is not reused.
constexpr const char* kTeacherCodeVersion = "1";
MCM_CONFIG_SECTION(TeacherSection);

// Real runs: check a diffusers unet/ folder against the data and record it.
int check_external(const config::Config& cfg, const dist::DistContext& ctx) {
  const stdfs::path folder = cfg.models.teacher.path;
  StageRun stage("teacher", kTeacherCodeVersion, cfg, ctx, {"models"}, "");
  std::vector<std::string> errors;
  json fields = json::object();
  if (ctx.is_root()) {
    try {
      const TeacherSource src = find_teacher(cfg, "teacher");
      auto unet = load_teacher_unet(src, torch::kBFloat16);  // half the memory of fp32; loading is the check
      const auto uc = unet->shape();
      const stdfs::path prep = stdfs::path(cfg.run.dir) / "prep";
      if (stdfs::is_directory(prep)) {
        for (auto& n : fs::list_dir(prep)) {
          if (n.rfind("video-", 0) != 0 || stdfs::path(n).extension() != ".h5") continue;
          io::LatentShardReader r(prep / n);
          auto ls = r.latent_shape();
          auto ts = r.text_shape();
          require<DataError>(static_cast<int64_t>(ls[0]) == uc.in_channels, "teacher ", folder, ": in_channels ",
                             uc.in_channels, " but ", prep / n, " holds ", ls[0], "-channel latents");
          require<DataError>(static_cast<int64_t>(ts[1]) == uc.cross_attention_dim, "teacher ", folder,
                             ": cross_attention_dim ", uc.cross_attention_dim, " but ", prep / n, " holds ", ts[1],
                             "-wide text embeddings");
          break;
        }
      }
      fields["teacher"] = {{"path", stdfs::absolute(folder).string()}, {"checksum", src.checksum},
                           {"config", unet->config_json()}, {"trained", false}};
      if (!src.motion_adapter.empty()) fields["teacher"]["motion_adapter"] = stdfs::absolute(src.motion_adapter).string();
      log::info("teacher: using ", folder.string(), " (", fields["teacher"]["checksum"].get<std::string>(), ")");
    } catch (const std::exception& e) {
      errors.push_back(cat("teacher: models.teacher.path = ", folder, ": ", e.what()));
      log::error(errors.back());
    }
  }
  bool ok = stage.finish(errors, fields);
  return ok ? 0 : 1;
}
}  // namespace

int run_teacher(const config::Config& cfg, const dist::DistContext& ctx) {
  if (!cfg.models.teacher.path.empty()) return check_external(cfg, ctx);
  const auto& tc = cfg.section<TeacherSection>();
  const auto& engine = cfg.section<train::TrainSection>();
  const stdfs::path run_dir = cfg.run.dir, out = run_dir / "teacher";
  torch::set_num_threads(resolve_threads(cfg, ctx));
  const torch::Device device = rank_device(ctx);
  const auto seed = static_cast<uint64_t>(cfg.run.seed);

  ShardInfo info = read_latent_shards(ctx, run_dir / "prep", "teacher");
  StageRun stage("teacher", kTeacherCodeVersion, cfg, ctx, {"teacher", "models", "run.seed", "train.precision"},
                 info.checksum);
  if (ctx.is_root()) fs::make_dirs(out);
  ctx.barrier();

  const stdfs::path weights = out / "unet" / "diffusion_pytorch_model.safetensors", config_file = out / "unet" / "config.json",
                    fidelity_file = out / "fidelity.json";
  auto w_prev = stage.reusable(weights, info.checksum);
  auto c_prev = stage.reusable(config_file, info.checksum);
  auto f_prev = stage.reusable(fidelity_file, info.checksum);
  const bool evaluates = tc.eval_prompts > 0 && cfg.models.text_encoder.kind == "word";  // as below
  if (w_prev && c_prev && (f_prev || !evaluates)) {
    if (ctx.is_root()) {
      log::info("teacher: ", weights.string(), " is up to date (same config and data): reused");
      stage.record_reused(*w_prev);
      stage.record_reused(*c_prev);
      if (f_prev) stage.record_reused(*f_prev);
    }
    json fields{{"reused", true}};
    if (f_prev) fields["fidelity"] = json::parse(fs::read_text(fidelity_file))["samples"]["score"];
    return stage.finish({}, fields) ? 0 : 1;
  }

  auto text_encoder = models::make_text_encoder(cfg.models.text_encoder, run_dir);
  auto autoencoder = models::make_autoencoder(cfg.models.autoencoder);
  require_text_encoder_fits(*text_encoder, info, "teacher");
  torch::Tensor empty_text = text_encoder->encode({""});

  // The same initial weights on every rank: the default generator seeded identically for init.
  at::Generator(at::globalContext().defaultGenerator(torch::Device(torch::kCPU))).set_current_seed(rng::seed64(rng::key(seed, "teacher", 0, "init")));
  models::VideoUnet unet = make_teacher_unet(tc, cfg.models.teacher.kind, info.latent[0], info.latent[2], info.text[1]);
  unet->to(device);
  unet->train();
  train::configure_torch(engine, seed, "teacher", ctx.rank(), device);

  diffusion::NoiseSchedule schedule(teacher_schedule(tc));
  train::TrainerSpec spec;
  spec.stage = "teacher";
  spec.dir = out;
  spec.optim = tc.optim;
  spec.engine = engine;
  for (auto& p : unet->named_parameters(/*recurse=*/true)) spec.params.emplace_back(p.key(), p.value());
  spec.identity = training_identity(cfg, "teacher", info);
  spec.seed = seed;
  spec.on_checkpoint = [&stage](const stdfs::path& done, int64_t step) {
    stage.record_output(done, {{"kind", "checkpoint"}, {"step", step}, {"retention", "rolling"}});
  };
  train::TrainResult res;
  json fidelity;
  {
    train::LatentLoader loader(loader_options(info, tc.optim, engine, ctx, seed, "teacher_loader"));
    if (ctx.is_root())
      log::info("teacher: ", loader.items(), " clips, global batch ", tc.optim.batch, " (", ctx.world_size(), " rank(s) x ",
                tc.optim.micro_batch, " x ", loader.accumulation(), " accumulation), ", tc.optim.steps, " steps, ",
                unet->config_json().value("_class_name", "UNet"), " ",
                spec.params.size(), " tensors");
    train::Trainer trainer(spec, ctx, device, loader, teacher_loss(unet, schedule, empty_text, tc.caption_dropout, diffusion::parse_prediction(tc.prediction),
                                                                  tc.sample_loss_weight_cap, seed, device));
    res = trainer.run();
    if (res.stop_signal == 0 && trainer.ema()) {
      torch::NoGradGuard no_grad;
      for (auto& [name, p] : spec.params) p.copy_(trainer.ema()->weights().at(name));
    }
  }
  if (res.stop_signal != 0) {
    stage.finish({}, {{"status", "interrupted"},
                      {"interrupted", {{"signal", StopSignals::name(res.stop_signal)}, {"step", res.step}}}});
    return kExitInterrupted;  // checkpointed: the same command resumes (slurm/lib.sh requeues on it)
  }
  unet->eval();
  // What the outputs were made from: StageRun::reusable matches this checksum on the next run.
  const json input{{"path", "prep"}, {"kind", "set"}, {"checksum", info.checksum}};
  if (ctx.is_root()) {
    models::save_video_unet(*unet, out / "unet");
    fs::make_dirs(out / "scheduler");
    fs::write_atomic(out / "scheduler" / "scheduler_config.json", teacher_scheduler_config(tc).dump(2) + "\n");
    stage.record_output(out / "scheduler" / "scheduler_config.json", {{"kind", "teacher_scheduler"}, {"input", input}});
    stage.record_output(config_file, {{"kind", "teacher_config"}, {"input", input}});
    stage.record_output(weights, {{"kind", "teacher_weights"}, {"steps", res.step}, {"input", input}});
    stage.record_output(out / "metrics.jsonl", {{"kind", "metrics"}, {"input", input}});
  }

  // Caption fidelity: the teacher's guided samples on held-out prompts, and the analyser on the
  // training clips themselves (its accuracy on this data, the ceiling of the first number).
  if (evaluates) {
    FidelityOptions fo;
    fo.prompts = tc.eval_prompts;
    fo.steps = tc.eval_steps;
    fo.guidance = tc.eval_guidance;
    fo.seed = seed;
    fo.latent_shape = info.latent;
    fo.ddim = teacher_ddim(tc);
    fo.ddim.eta = tc.eval_eta;
    autoencoder->place(device, torch::kFloat32);
    text_encoder->place(device, torch::kFloat32);
    auto prompts = held_out_prompts(tc.eval_prompts, seed, info.captions);
    fidelity["samples"] = teacher_fidelity(unet, *autoencoder, *text_encoder, schedule, prompts, fo, ctx, device);
    if (ctx.is_root()) {
      auto clips = read_shard_clips(info.shards.front(), info.latent, info.text, 64);
      fidelity["analyser_on_training_clips"] = analyser_on_data(*autoencoder, clips.latents, clips.captions);
      const auto few = std::min<int64_t>(clips.latents.size(0), 16);
      fidelity["denoising_residual"] =
          denoising_residual(unet, schedule, clips.latents.slice(0, 0, few), clips.text.slice(0, 0, few),
                             diffusion::parse_prediction(tc.prediction), seed, {19, 99, 299, 599}, device);
      fs::write_atomic(fidelity_file, fidelity.dump(1) + "\n");
      stage.record_output(fidelity_file, {{"kind", "fidelity"}, {"input", input}});
      auto& s = fidelity["samples"]["score"];
      log::info("teacher: caption fidelity of ", tc.eval_prompts, " held-out prompts (", tc.eval_steps, "-step DDIM, eta ",
                tc.eval_eta, ", guidance ", tc.eval_guidance, "): ", s.dump());
    }
  }
  json fields{{"steps", res.step}, {"resumed_from", res.resumed_from}, {"skipped_steps", res.skipped_steps},
              {"final_loss", res.last_loss}, {"train_seconds", res.seconds}, {"unet_config", unet->config_json()}};
  if (!fidelity.is_null()) fields["fidelity"] = {{"samples", fidelity["samples"]["score"]},
                                                  {"analyser_on_training_clips", fidelity.value("analyser_on_training_clips", json())},
                                                  {"denoising_residual", fidelity.value("denoising_residual", json())}};
  return stage.finish({}, fields) ? 0 : 1;
}

MCM_STAGE("teacher", 30, run_teacher, "pretrain the embedded UNet3D teacher (or check models.teacher.path)");

}  // namespace mcm::stages
