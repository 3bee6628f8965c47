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
  int64_t channels = 64;           ///< UNet width of the first level (doubles per level)
  int64_t levels = 2;              ///< UNet resolution levels
  int64_t cross_attention_levels = 2;  ///< the first N levels have text cross-attention (ModelScope: 3 of 4)
  int64_t layers_per_block = 1;    ///< ResNet layers per level
  int64_t head_dim = 32;           ///< attention head width
  int64_t norm_groups = 32;        ///< GroupNorm groups (divides channels)
  int64_t eval_prompts = 32;       ///< held-out prompts sampled to measure caption fidelity (0 = skip)
  int64_t eval_steps = 50;         ///< DDIM steps of those samples
  double eval_guidance = 5.0;      ///< classifier-free guidance scale of those samples

  void visit(config::FieldVisitor& v);
  void validate(const config::Config& cfg) const;
};

}  // namespace mcm::stages
