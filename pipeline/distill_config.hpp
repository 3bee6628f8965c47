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
  /// Held-out prompts on which the student's 1/2/4/8-step LCM samples and the teacher's
  /// same-step guided DDIM samples are scored for caption fidelity (distill/fidelity.json; the
  /// synthetic world's word encoder only; 0 = skip). Evaluation keys do not shape training.
  int64_t eval_prompts = 0;
  double eval_guidance = 3.0;      ///< classifier-free guidance of the teacher's DDIM baseline

  void visit(config::FieldVisitor& v);
  void validate(const config::Config& cfg) const;
};

}  // namespace mcm::stages
