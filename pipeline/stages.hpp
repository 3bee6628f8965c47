// Stage entry points of the pipeline folder: each `mcm <stage>` main calls run_<stage>(cfg, ctx);
// tests call the same. Each returns the process exit code.
#pragma once
#include "core/config.hpp"
#include "dist/dist_context.hpp"

namespace mcm::stages {

/// Embedded default: pretrains the small UNet3D teacher on prep's video latents and writes
/// teacher/unet (diffusers folder). With models.teacher.path: checks and records those weights.
int run_teacher(const config::Config& cfg, const dist::DistContext& ctx);

/// MCM distillation of the teacher (models.teacher.path or the embedded one) into a LoRA student:
/// distill/student/{unet,lora,scheduler}.
int run_distill(const config::Config& cfg, const dist::DistContext& ctx);

/// Samples of the teacher, the student and the baseline for every configured method and step
/// count from the same noise: sample/<method>_<n>step.h5 and previews.
int run_sample(const config::Config& cfg, const dist::DistContext& ctx);

/// FVD (against prep's clips) and caption fidelity of every file `mcm sample` wrote: eval/metrics.json.
int run_eval(const config::Config& cfg, const dist::DistContext& ctx);

}  // namespace mcm::stages
