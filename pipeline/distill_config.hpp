// [distill]: MCM distillation of the teacher into a few-step student (Note [sections] in
// core/config.hpp; the method in ../shared/MCM.md). Registered in distill.cpp.
#pragma once
#include <cstdint>
#include <string>

#include "core/config.hpp"
#include "train/train_config.hpp"

namespace mcm::stages {

struct DistillSection {
  static constexpr const char* kName = "distill";
  train::OptimConfig optim;        ///< steps, batch, micro_batch, lr (student: LoRA + motion head), ...
  int64_t lora_rank = 64;          ///< student LoRA rank (MCM: 64)
  double lora_alpha = 64;          ///< student LoRA alpha (MCM: 64)
  int64_t solver_steps = 50;       ///< the DDIM solver grid: tau_i = (T / n)(i + 1) - 1
  double w_min = 5.0;              ///< guidance w ~ U[w_min, w_max] per sample; the teacher target is
  double w_max = 15.0;             ///< x0_c + w (x0_c - x0_u) (LCM's convention: CFG scale w + 1)
  /// Guidance interval (Kynkaenniemi et al. 2024, "Applying guidance in a limited interval improves
  /// sample and distribution quality"): the teacher's target is guided only where guidance_t_min <= t
  /// <= guidance_t_max (t the step's start, in the teacher's training timesteps), and conditional
  /// (w = 0) elsewhere. Not part of MCM: the default range holds every t, which is MCM's target.
  int64_t guidance_t_min = 0;
  int64_t guidance_t_max = 1000;
  double timestep_scaling = 4.0;   ///< boundary-condition scaling of t (MCM: 4; diffusers' LCM: 10)
  double huber_c = 0.001;          ///< pseudo-Huber constant c: sqrt(d^2 + c^2) - c
  /// The motion representation M of the consistency loss: "learn" (residual 1x1-conv head, MCM's
  /// default), "raw" (identity: the LCM baseline), "diff" (temporal difference) or "freq"
  /// (Butterworth band of the 3-D FFT).
  std::string motion = "learn";
  int64_t motion_hidden = 64;      ///< learn: head width
  int64_t motion_groups = 32;      ///< learn: GroupNorm groups of the head
  double motion_ema = 0.95;        ///< learn: decay of the head's target copy, updated every optimizer step
  double freq_cutoff = 0.25;       ///< freq: Butterworth cutoff (normalised frequency radius)
  int64_t freq_order = 4;          ///< freq: Butterworth order
  /// freq: which band M keeps, "low" or "high". Low by default: the coarse layout and its movement
  /// live in the low 3-D frequencies, texture (the appearance the discriminator owns) in the high ones.
  std::string freq_band = "low";
  /// Mixed trajectory distillation: probability that a sample's x0 is the student's own one-step
  /// sample from pure noise instead of the real latents. Drawn per sample (keyed by its id), not per
  /// micro-batch as in the reference, so the draws do not depend on how a global batch is split
  /// over ranks and micro-batches (the engine's same-global-batch guarantee); the expectation is the same.
  double mixed_prob = 0.5;
  /// Frame discriminator (MCM.md "Frame discriminator"): weight of the generator's hinge loss in
  /// the student's loss. 0 turns the discriminator off (with motion = "raw": the LCM baseline).
  double disc_weight = 1.0;
  /// Its frozen feature network: "teacher" (the teacher's own encoder on latent frames, LADD's
  /// latent discriminator; needs no download) or "dinov2" (ViT-S/14 on decoded frames, MCM's
  /// choice; a transformers Dinov2Model folder in disc_backbone_path).
  std::string disc_backbone = "teacher";
  std::string disc_backbone_path;  ///< dinov2: folder with config.json and model.safetensors
  double disc_lr = 1e-4;           ///< the discriminator's AdamW learning rate (same schedule shape as the student's)
  int64_t disc_frames = 2;         ///< k: random frames per clip judged in each pass
  int64_t disc_cmap_dim = 64;      ///< projection width of the heads' text conditioning
  int64_t disc_virtual_batch = 8;  ///< local batch-norm group size (frames)
  int64_t disc_timestep = 0;       ///< teacher backbone: the timestep its features are taken at
  int64_t disc_image_size = 224;   ///< dinov2: decoded frames are resized to this square (MCM: 224)
  /// Real frames: "images" (the image shards, each with its own caption: MCM's high-quality set)
  /// or "clip" (frames of the training clip itself, with its caption).
  std::string disc_real = "images";
  double gp_weight = 1e-5;         ///< initial weight of the gradient penalty on interpolates
  double gp_raise = 5.0;           ///< the weight is multiplied by this when the step's penalty
  double gp_threshold = 100.0;     ///< exceeds this,
  int64_t gp_raise_every = 500;    ///< at most once per this many steps
  /// Held-out prompts on which the student's 1/2/4/8-step LCM samples and the teacher's
  /// same-step guided DDIM samples are scored for caption fidelity (distill/fidelity.json; the
  /// synthetic world's word encoder only; 0 = skip). Evaluation keys do not shape training.
  /// Output folder under run.dir: a second distillation in the same run (the LCM baseline:
  /// motion = "raw", disc_weight = 0) writes beside MCM's with out = "distill_lcm".
  std::string out = "distill";
  int64_t eval_prompts = 0;
  double eval_guidance = 3.0;      ///< classifier-free guidance of the teacher's DDIM baseline

  void visit(config::FieldVisitor& v);
  void validate(const config::Config& cfg) const;
};

}  // namespace mcm::stages
