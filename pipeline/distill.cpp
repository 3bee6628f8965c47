// `mcm distill`: MCM's consistency distillation of the teacher into a few-step student on the
// training engine (src/train): the student is the teacher plus LoRA on MCM's target list (temporal
// convs frozen), trained with the consistency loss on a motion representation (pipeline/
// distill_model.hpp) and mixed trajectories. Writes distill/student/unet (LoRA merged, a diffusers
// folder), distill/student/lora (the adapters in PEFT form), distill/student/scheduler (LCMScheduler
// settings) and distill/metrics.jsonl; the motion head and its target copy live in checkpoints only.
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/rng.hpp"
#include "core/signals.hpp"
#include "models/encoders.hpp"
#include "models/lora.hpp"
#include "models/weights.hpp"
#include "pipeline/distill_config.hpp"
#include "pipeline/distill_model.hpp"
#include "pipeline/prep_shards.hpp"
#include "pipeline/stages.hpp"
#include "pipeline/teacher_fidelity.hpp"
#include "pipeline/teacher_model.hpp"
#include "stages/stage_run.hpp"
#include "stages/stage_table.hpp"
#include "train/trainer.hpp"

namespace mcm::stages {
namespace {
using json = nlohmann::json;
namespace stdfs = std::filesystem;

// Version of the distillation algorithm (loss, draws, init): bump when a change alters the student
// written for the same config, data and teacher, so an old student is not reused.
constexpr const char* kDistillCodeVersion = "2";  // 2: the frame discriminator
MCM_CONFIG_SECTION(DistillSection);

// diffusers' LCMScheduler settings for the student: the teacher's schedule, MCM's timestep scaling.
json student_scheduler_config(const TeacherSource& t, const DistillSection& d) {
  return {{"_class_name", "LCMScheduler"},
          {"num_train_timesteps", t.schedule.num_train_timesteps},
          {"beta_start", t.schedule.beta_start},
          {"beta_end", t.schedule.beta_end},
          {"beta_schedule", t.schedule.beta_schedule},
          {"original_inference_steps", d.solver_steps},
          {"timestep_scaling", d.timestep_scaling},
          {"prediction_type", t.prediction_name},
          {"rescale_betas_zero_snr", t.schedule.rescale_zero_terminal_snr},
          {"set_alpha_to_one", true},
          {"steps_offset", 0},
          {"clip_sample", false},
          {"timestep_spacing", "leading"}};
}

train::NamedTensors buffers(torch::nn::Module& m, const std::string& prefix) {
  train::NamedTensors out;
  for (auto& b : m.named_buffers(true)) out.emplace_back(prefix + b.key(), b.value());
  return out;
}

train::NamedTensors named(torch::nn::Module& m, const std::string& prefix, bool trainable_only) {
  train::NamedTensors out;
  for (auto& p : m.named_parameters(true))
    if (!trainable_only || p.value().requires_grad()) out.emplace_back(prefix + p.key(), p.value());
  return out;
}
}  // namespace

int run_distill(const config::Config& cfg, const dist::DistContext& ctx) {
  const auto& dc = cfg.section<DistillSection>();
  const auto& engine = cfg.section<train::TrainSection>();
  const stdfs::path run_dir = cfg.run.dir, out = run_dir / dc.out, student_dir = out / "student";
  torch::set_num_threads(resolve_threads(cfg, ctx));
  const torch::Device device = rank_device(ctx);
  const auto seed = static_cast<uint64_t>(cfg.run.seed);

  ShardInfo info = read_latent_shards(ctx, run_dir / "prep", "distill");
  const bool adversarial = dc.disc_weight > 0;
  const bool real_images = adversarial && dc.disc_real == "images";
  ShardInfo images;
  if (real_images) {
    try {
      images = read_latent_shards(ctx, run_dir / "prep", "distill", "image");
    } catch (const IoError& e) {
      throw IoError(cat(e.what(), " (distill.disc_real = \"images\" takes the discriminator's real frames from them; "
                                  "set distill.disc_real = \"clip\" to take them from the training clips)"));
    }
    const std::vector<int64_t> want{info.latent[0], info.latent[2], info.latent[3]};
    require<DataError>(images.latent == want && images.text == info.text, "distill: the image shards (",
                       images.shards.front(), ", ...) hold latents ", shape_str(images.latent), " and text ",
                       shape_str(images.text), ", but the video shards' frames are ", shape_str(want), " and text ",
                       shape_str(info.text), " (distill.disc_real = \"images\"); prep both with the same settings, or set "
                       "distill.disc_real = \"clip\"");
  }
  const TeacherSource teacher_src = find_teacher(cfg, "distill");
  const bool dino = adversarial && dc.disc_backbone == "dinov2";
  std::string dino_checksum;
  if (dino) {
    require<IoError>(stdfs::is_regular_file(stdfs::path(dc.disc_backbone_path) / "config.json"), "distill: no DINOv2 at ",
                     dc.disc_backbone_path, " (distill.disc_backbone_path): expected a transformers Dinov2Model folder "
                     "with config.json and model.safetensors");
    dino_checksum = models::folder_checksum(dc.disc_backbone_path);
  }
  const std::string input_checksum = info.checksum + "+" + teacher_src.checksum +
                                     (real_images ? "+images:" + images.checksum : std::string()) +
                                     (dino ? "+dinov2:" + dino_checksum : std::string());
  StageRun stage("distill", kDistillCodeVersion, cfg, ctx, {"distill", "models", "run.seed", "train.precision"},
                 input_checksum);
  if (ctx.is_root()) fs::make_dirs(out);
  ctx.barrier();

  const stdfs::path weights = student_dir / "unet" / "diffusion_pytorch_model.safetensors",
                    lora_file = student_dir / "lora" / "pytorch_lora_weights.safetensors",
                    sched_file = student_dir / "scheduler" / "scheduler_config.json";
  {
    auto w = stage.reusable(weights, input_checksum), l = stage.reusable(lora_file, input_checksum),
         s = stage.reusable(sched_file, input_checksum), c = stage.reusable(student_dir / "unet" / "config.json", input_checksum);
    if (w && l && s && c) {
      if (ctx.is_root()) {
        log::info("distill: ", student_dir.string(), " is up to date (same config, data and teacher): reused");
        for (auto* e : {&w, &l, &s, &c}) stage.record_reused(**e);
      }
      return stage.finish({}, {{"reused", true}}) ? 0 : 1;
    }
  }

  auto text_encoder = models::make_text_encoder(cfg.models.text_encoder, run_dir);
  require_text_encoder_fits(*text_encoder, info, "distill");
  torch::Tensor uncond = text_encoder->encode({""}).to(device);

  CdModels m;
  m.teacher = load_teacher_unet(teacher_src);
  const auto uc = m.teacher->shape();
  require<DataError>(uc.in_channels == info.latent[0] && uc.cross_attention_dim == info.text[1], "distill: teacher ",
                     teacher_src.unet, " takes ", uc.in_channels, "-channel latents and ", uc.cross_attention_dim,
                     "-wide text, but the prep shards hold ", info.latent[0], "-channel latents and ", info.text[1],
                     "-wide text embeddings");
  m.teacher->to(device);
  for (auto& p : m.teacher->parameters()) p.set_requires_grad(false);
  m.student = load_teacher_unet(teacher_src);
  models::LoraConfig lc;
  lc.rank = dc.lora_rank;
  lc.alpha = dc.lora_alpha;
  // The same adapter initialisation on every rank (lora_A random, lora_B zero).
  at::Generator(at::globalContext().defaultGenerator(torch::Device(torch::kCPU)))
      .set_current_seed(rng::seed64(rng::key(seed, "distill", 0, "init")));
  const auto adapted = models::attach_lora(*m.student, lc);
  models::freeze_all_but_lora(*m.student);
  m.student->to(device);
  m.student->train();

  models::MotionRepresentation::Options mo;
  mo.kind = models::parse_motion_kind(dc.motion, "distill.motion");
  mo.freq_cutoff = dc.freq_cutoff;
  mo.freq_order = dc.freq_order;
  mo.freq_high_pass = dc.freq_band == "high";
  models::MotionRepresentation motion(mo);
  const bool learn = mo.kind == models::MotionKind::learn;
  if (learn) {
    models::MotionHeadConfig hc{info.latent[0], dc.motion_hidden, dc.motion_groups};
    m.head = models::MotionHead(hc);
    m.head_target = models::MotionHead(hc);
    models::load_strict(*m.head_target, models::state_dict(*m.head), "motion head target");
    m.head->to(device);
    m.head_target->to(device);
    for (auto& p : m.head_target->parameters()) p.set_requires_grad(false);
  }
  // The frame discriminator: a frozen backbone and trainable heads, the same initialisation on every rank.
  std::unique_ptr<models::DiscBackbone> backbone;
  std::unique_ptr<models::FrameAutoencoder> disc_autoencoder;  // dinov2: decodes the judged frames
  Adversary adv;
  if (adversarial) {
    models::DiffAugmentOptions aug;
    if (dino) {
      disc_autoencoder = models::make_autoencoder(cfg.models.autoencoder);
      disc_autoencoder->place(device, torch::kFloat32);
      auto net = models::load_dinov2(dc.disc_backbone_path);
      net->to(device);
      backbone = std::make_unique<models::Dinov2Backbone>(*disc_autoencoder, net, dc.disc_image_size, aug);
    } else {
      backbone = std::make_unique<models::TeacherBackbone>(m.teacher, dc.disc_timestep, aug);
    }
    at::Generator(at::globalContext().defaultGenerator(torch::Device(torch::kCPU)))
        .set_current_seed(rng::seed64(rng::key(seed, "distill", 0, "disc_init")));
    adv.backbone = backbone.get();
    adv.disc = models::FrameDiscriminator(backbone->channels(), info.text[1], dc.disc_cmap_dim, dc.disc_virtual_batch);
    adv.disc->to(device);
  }
  train::configure_torch(engine, seed, "distill", ctx.rank(), device);

  diffusion::NoiseSchedule schedule(teacher_src.schedule);
  const auto co = cd_options(dc, teacher_src.prediction);
  require<ConfigError>(schedule.num_train_timesteps() % dc.solver_steps == 0, "distill.solver_steps = ", dc.solver_steps,
                       " does not divide the teacher's ", schedule.num_train_timesteps(), " training timesteps");

  train::TrainerSpec spec;
  spec.stage = "distill";
  spec.dir = out;
  spec.optim = dc.optim;
  spec.engine = engine;
  spec.params = named(*m.student, "", true);
  if (learn) {
    for (auto& p : named(*m.head, "motion_head.", false)) spec.params.push_back(p);
    spec.state = named(*m.head_target, "motion_head_target.", false);
  }
  // The penalty weight and the step of its last raise (MCM.md), checkpointed with the run.
  auto gp_state = torch::tensor({dc.gp_weight, -1.0}, torch::kFloat64);
  const models::GpWeightRule gp_rule{dc.gp_raise, dc.gp_threshold, dc.gp_raise_every};
  if (adversarial) {
    train::CriticSpec critic;
    critic.name = "disc";
    critic.optim = dc.optim;
    critic.optim.lr = dc.disc_lr;
    critic.optim.grad_clip = 0;  // MCM clips the LoRA parameters only
    critic.optim.ema_decay = 0;
    critic.params = named(*adv.disc, "disc.", false);
    spec.critic = std::move(critic);
    for (auto& b : buffers(*adv.disc, "disc.")) spec.state.push_back(b);  // spectral-norm u, v
    spec.state.emplace_back("disc.gp_weight_and_last_raise", gp_state);
  }
  spec.after_step = [&, learn, adversarial](int64_t step, const std::map<std::string, double>& terms) {
    if (learn) ema_update(*m.head_target, *m.head, dc.motion_ema);
    if (adversarial) {
      adv.disc->power_iteration();  // Note [spectral norm once per step]
      auto g = gp_state.accessor<double, 1>();
      auto last = static_cast<int64_t>(g[1]);
      const double before = g[0];
      g[0] = gp_rule.next(g[0], terms.at("gp"), step, last);
      g[1] = static_cast<double>(last);
      if (g[0] != before && ctx.is_root())
        log::info("distill: step ", step, ": gradient penalty ", terms.at("gp"), " > ", dc.gp_threshold, ": its weight ",
                  before, " -> ", g[0]);
    }
  };
  spec.identity = training_identity(cfg, "distill", info);
  spec.identity["teacher.checksum"] = teacher_src.checksum;
  if (real_images) spec.identity["images.checksum"] = images.checksum;
  if (dino) spec.identity["dinov2.checksum"] = dino_checksum;
  spec.seed = seed;
  spec.on_checkpoint = [&stage](const stdfs::path& done, int64_t step) {
    stage.record_output(done, {{"kind", "checkpoint"}, {"step", step}, {"retention", "rolling"}});
  };
  const std::vector<int64_t> latent_shape = info.latent;
  // What the discriminator's step takes from the student's step of the same micro-batch.
  struct Handoff {
    torch::Tensor pred, text, x0;
    AdvDraws draws;
  } handoff;
  std::unique_ptr<train::LatentLoader> image_loader;
  auto loss_fn = [&](const train::Batch& b, int64_t) {
    auto draws = draw_cd(b.sample_ids, dc, seed, latent_shape, device);
    auto x0 = b.latents.to(device), text = b.text_emb.to(device);
    auto r = consistency_loss(m, schedule, co, motion, x0, text, uncond, draws);
    train::LossTerms lt;
    lt.loss = r.loss;
    lt.logged["l_cd"] = r.loss.detach().item<double>();
    lt.logged["mixed_share"] = draws.mixed.to(torch::kFloat64).mean().item<double>();
    if (adversarial) {
      auto ad = draw_adv(b.sample_ids, dc.disc_frames, latent_shape[1], latent_shape[2], latent_shape[3],
                         backbone->augment(), seed);
      auto g = generator_adv_loss(adv, r.pred, text, ad);
      lt.loss = lt.loss + dc.disc_weight * g;
      lt.logged["g_adv"] = g.detach().item<double>();
      handoff = {r.pred.detach(), text, x0, std::move(ad)};
    }
    return lt;
  };
  auto disc_loss_fn = [&](const train::Batch& b, int64_t) {
    torch::Tensor real, real_text;
    if (image_loader) {
      train::Batch ib = image_loader->next();
      require<DataError>(ib.step == b.step && ib.micro == b.micro, "distill: the image loader is at step ", ib.step,
                         " micro ", ib.micro, ", the video loader at step ", b.step, " micro ", b.micro);
      real = ib.latents.to(device);
      real_text = ib.text_emb.to(device);
    } else {
      real = pick_frames(handoff.x0, handoff.draws.real_frames);
      real_text = handoff.text.repeat_interleave(dc.disc_frames, 0);
    }
    auto t = discriminator_losses(adv, handoff.pred, handoff.text, real, real_text, handoff.draws);
    const double w = gp_state[0].item<double>();
    train::LossTerms lt;
    lt.loss = t.hinge + w * t.gp;
    lt.logged["d_hinge"] = t.hinge.detach().item<double>();
    lt.logged["gp"] = t.gp.detach().item<double>();
    lt.logged["gp_weight"] = w;
    lt.logged["d_real"] = t.real_logit;
    lt.logged["d_fake"] = t.fake_logit;
    return lt;
  };
  if (adversarial) spec.critic->loss = disc_loss_fn;

  train::TrainResult res;
  {
    train::LatentLoader loader(loader_options(info, dc.optim, engine, ctx, seed, "distill_loader"));
    if (real_images) {
      // k images per clip, dealt like the clips: the same global batches for any world size.
      auto io = dc.optim;
      io.batch *= dc.disc_frames;
      io.micro_batch *= dc.disc_frames;
      image_loader = std::make_unique<train::LatentLoader>(loader_options(images, io, engine, ctx, seed, "distill_images"));
      spec.side_loaders.push_back(image_loader.get());
    }
    int64_t trainable = 0;
    for (auto& [n, p] : spec.params) trainable += p.numel();
    if (ctx.is_root())
      log::info("distill: ", loader.items(), " clips, global batch ", dc.optim.batch, " (", ctx.world_size(), " rank(s) x ",
                dc.optim.micro_batch, " x ", loader.accumulation(), " accumulation), ", dc.optim.steps, " steps; student = ",
                teacher_src.unet.string(), " (", m.teacher->config_json().value("_class_name", "UNet"), ") + LoRA rank ", dc.lora_rank, " on ", adapted.size(), " layers, motion ",
                dc.motion, ", mixed trajectories p = ", dc.mixed_prob, "; ", trainable, " trainable parameters; ",
                adversarial ? cat("discriminator on the ", dc.disc_backbone, " backbone (", adv.disc->levels(),
                                  " heads), weight ", dc.disc_weight, ", real frames from ",
                                  real_images ? cat(image_loader->items(), " images") : std::string("the clips"))
                            : std::string("no discriminator"));
    train::Trainer trainer(spec, ctx, device, loader, loss_fn);
    res = trainer.run();
  }
  if (res.stop_signal != 0) {
    stage.finish({}, {{"status", "interrupted"},
                      {"interrupted", {{"signal", StopSignals::name(res.stop_signal)}, {"step", res.step}}}});
    return kExitInterrupted;  // checkpointed: the same command resumes (slurm/lib.sh requeues on it)
  }

  // What the outputs were made from: StageRun::reusable matches this checksum on the next run.
  const json input{{"path", teacher_src.unet.string()}, {"kind", "set"}, {"checksum", input_checksum}, {"prep_checksum", info.checksum},
                   {"teacher_checksum", teacher_src.checksum}};
  if (ctx.is_root()) {
    m.student->eval();
    models::save_lora(*m.student, lc, student_dir / "lora");
    models::merge_lora(*m.student);
    models::save_video_unet(*m.student, student_dir / "unet");
    fs::make_dirs(student_dir / "scheduler");
    fs::write_atomic(sched_file, student_scheduler_config(teacher_src, dc).dump(2) + "\n");
    stage.record_output(lora_file, {{"kind", "student_lora"}, {"steps", res.step}, {"input", input}});
    stage.record_output(student_dir / "unet" / "config.json", {{"kind", "student_config"}, {"input", input}});
    stage.record_output(weights, {{"kind", "student_weights"}, {"steps", res.step}, {"input", input}});
    stage.record_output(sched_file, {{"kind", "student_scheduler"}, {"input", input}});
    stage.record_output(out / "metrics.jsonl", {{"kind", "metrics"}, {"input", input}});
    log::info("distill: student written to ", student_dir.string(), " (", res.step, " steps)");
  }

  // Caption fidelity of held-out prompts: the student's few-step LCM samples against the teacher's
  // guided DDIM at the same step counts, every method from the same x_T and step noise per prompt.
  // A third row is the control: the student before training, which is the teacher itself through
  // the same LCM sampler (the LoRA starts at zero and the motion head is not used to sample). What
  // the distillation added is the difference between it and the student, prompt for prompt.
  json fidelity;
  if (dc.eval_prompts > 0 && cfg.models.text_encoder.kind == "word") {
    if (!ctx.is_root()) {  // rank 0 merged the adapters above; the others do it now for sampling
      m.student->eval();
      models::merge_lora(*m.student);
    }
    auto autoencoder = models::make_autoencoder(cfg.models.autoencoder);
    autoencoder->place(device, torch::kFloat32);
    text_encoder->place(device, torch::kFloat32);
    auto prompts = held_out_prompts(dc.eval_prompts, seed, info.captions);
    diffusion::LcmOptions lcm;
    lcm.original_inference_steps = dc.solver_steps;
    lcm.timestep_scaling = dc.timestep_scaling;
    lcm.prediction = teacher_src.prediction;
    const auto ddim = teacher_ddim(teacher_src.prediction, teacher_src.schedule.rescale_zero_terminal_snr);
    auto lcm_sampler = [&](const models::VideoUnet& net, int64_t steps) -> PromptSampler {
      return [&net, &schedule, &lcm, steps](torch::Tensor x, const torch::Tensor& cond, const torch::Tensor&,
                                            const StepNoise& noise) {
        return sample_lcm(net, schedule, std::move(x), cond, steps, lcm, noise);
      };
    };
    for (int64_t steps : {1, 2, 4, 8}) {
      auto teacher = [&](torch::Tensor x, const torch::Tensor& cond, const torch::Tensor& unc, const StepNoise& noise) {
        return sample_ddim_cfg(m.teacher, schedule, std::move(x), cond, unc, dc.eval_guidance, steps, ddim, noise);
      };
      // (record key, log label, sampler): one row of fidelity.json each.
      const std::vector<std::tuple<std::string, std::string, PromptSampler>> rows{
          {"student_lcm", "student (LCM)", lcm_sampler(m.student, steps)},
          {"untrained_lcm", "untrained student (LCM)", lcm_sampler(m.teacher, steps)},
          {"teacher_ddim", cat("teacher (DDIM, guidance ", dc.eval_guidance, ")"), teacher}};
      const auto key = std::to_string(steps);
      std::string line;
      for (const auto& [name, label, sample] : rows) {
        fidelity[name][key] = prompt_fidelity(sample, *autoencoder, *text_encoder, prompts, seed, info.latent, ctx, device);
        line += cat(line.empty() ? "" : ", ", label, " ", fidelity[name][key]["score"]["accuracy"].dump());
      }
      if (ctx.is_root()) log::info("distill: caption fidelity at ", steps, " step(s): ", line);
    }
    fidelity["eval_guidance"] = dc.eval_guidance;
    if (ctx.is_root()) {
      fs::write_atomic(out / "fidelity.json", fidelity.dump(1) + "\n");
      stage.record_output(out / "fidelity.json", {{"kind", "fidelity"}, {"input", input}});
    }
  }
  json fields{{"steps", res.step},          {"resumed_from", res.resumed_from}, {"skipped_steps", res.skipped_steps},
              {"train_seconds", res.seconds}, {"teacher", teacher_src.unet.string()},
              {"teacher_checksum", teacher_src.checksum}, {"motion", dc.motion}};
  if (res.step > std::max<int64_t>(res.resumed_from, 0)) fields["final_loss"] = res.last_loss;  // steps ran in this process
  if (!fidelity.is_null())
    for (auto& [method, by_steps] : fidelity.items())
      if (by_steps.is_object())  // the rows; eval_guidance is the one number beside them
        for (auto& [steps, r] : by_steps.items()) fields["fidelity"][method][steps] = r["score"];
  return stage.finish({}, fields) ? 0 : 1;
}

MCM_STAGE("distill", 40, run_distill, "MCM distillation of the teacher into a few-step LoRA student");

}  // namespace mcm::stages
