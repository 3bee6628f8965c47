// [teacher]: the embedded default's teacher pretraining (Note [sections] in core/config.hpp).
// With models.teacher.path set, the stage trains nothing and these keys only name the
// fidelity check. Registered in teacher.cpp.
#pragma once
#include <cstdint>
#include <string>

#include "core/config.hpp"
#include "train/train_config.hpp"

namespace mcm::stages {

struct TeacherSection {
  static constexpr const char* kName = "teacher";
  train::OptimConfig optim;        ///< steps, batch, micro_batch, lr, ... (train/train_config.hpp)
  double caption_dropout = 0.1;    ///< probability of training on the empty caption (for classifier-free guidance)
  /// What the UNet predicts: "epsilon" (ModelScope's), "v_prediction" or "sample" (x0). Written
  /// to teacher/scheduler/. The embedded default predicts x0 (Note [x0 teacher] in
  /// teacher_model.cpp): a v or epsilon model must reproduce the noise itself to denoise, and a
  /// model trained for minutes leaves part of it in every step (speckled, rounded shapes), while an
  /// x0 model's output is clean by construction. Epsilon is also amplified by 1/sqrt(abar_T) = 14.6
  /// at t ~ T.
  std::string prediction = "sample";
  /// With prediction = "sample": the loss is mean(min(1 + SNR_t, cap) * (x0_hat - x0)^2), the
  /// weighting of x0 errors that the v loss has (1 + SNR = 1 / (1 - abar_t)), capped so that the
  /// few t with SNR above cap - 1 do not outweigh the rest. 1 is the plain x0 MSE. Ignored by
  /// epsilon and v, whose loss is the plain MSE of their target.
  double sample_loss_weight_cap = 50;
  /// Rescale the betas to zero terminal SNR (Lin et al. 2023; needs v or x0 prediction) and sample
  /// with trailing timesteps. Without it a small model learns to read the sqrt(abar_999) = 0.068 of
  /// signal left at t = 999 in training and sees none in pure noise at inference (measured: x0
  /// error 0.10 on noised training clips, 0.52 from pure noise). Written to teacher/scheduler/.
  bool zero_terminal_snr = true;
  int64_t channels = 32;           ///< UNet width of the first level (doubles per level)
  int64_t max_channels = 0;        ///< cap on a level's width (0 = none; ModelScope: 320 doubling, capped at 1280)
  int64_t levels = 2;              ///< UNet resolution levels
  int64_t cross_attention_levels = 2;  ///< the first N levels have text cross-attention (ModelScope: 3 of 4)
  int64_t layers_per_block = 1;    ///< ResNet layers per level
  int64_t head_dim = 16;           ///< attention head width
  int64_t norm_groups = 8;         ///< GroupNorm groups (divides channels)
  int64_t eval_prompts = 32;       ///< held-out prompts sampled to measure caption fidelity (0 = skip)
  int64_t eval_steps = 50;         ///< DDIM steps of those samples
  double eval_guidance = 5.0;      ///< classifier-free guidance scale of those samples
  double eval_eta = 0.0;           ///< DDIM eta of those samples (0 = deterministic DDIM, 1 = ancestral)

  void visit(config::FieldVisitor& v);
  void validate(const config::Config& cfg) const;
};

}  // namespace mcm::stages
