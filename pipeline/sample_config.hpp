// [sample]: `mcm sample`, few-step samples of every method from the same noise (Note [sections] in
// core/config.hpp). Registered in sample.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/config.hpp"

namespace mcm::stages {

struct SampleSection {
  static constexpr const char* kName = "sample";
  /// "" samples held-out prompts of the synthetic world (captions absent from prep's training set);
  /// otherwise a UTF-8 file with one prompt per line.
  std::string prompts;
  int64_t count = 32;   ///< held-out prompts (with prompts = "")
  int64_t seeds = 1;    ///< samples per prompt, each from its own noise
  /// What to sample: "teacher_ddim" and "teacher_dpm" (DDIM and DPM-Solver++(2M) with classifier-
  /// free guidance at each of `steps`), "teacher_ddim50" (DDIM at 50 steps, the reference),
  /// "student" and "baseline" (LCM multistep at each of `steps`, no guidance, from the distill
  /// folders `student` and `baseline`).
  std::vector<std::string> methods{"teacher_ddim", "teacher_dpm", "teacher_ddim50", "student", "baseline"};
  std::vector<int64_t> steps{1, 2, 4, 8};
  double guidance = 5.0;               ///< the teacher's classifier-free guidance scale
  double eta = 0.0;                    ///< the teacher's DDIM eta (0: deterministic)
  std::string student = "distill";     ///< distill.out of the MCM student
  std::string baseline = "distill_lcm";  ///< distill.out of the LCM baseline (method "baseline")
  /// More distilled students, each a distill.out folder sampled like the student at every step
  /// count under its own name (method "distill_raw", files distill_raw_<n>step.h5): the ablations
  /// (bench/ablation.sh: motion representations, no mixed trajectories).
  std::vector<std::string> ablations;
  int64_t batch = 8;                   ///< samples per forward on a rank
  int64_t previews = 8;                ///< samples in each preview grid (GIF and mp4); 0 = none
  int64_t fps = 8;                     ///< frame rate of the previews

  void visit(config::FieldVisitor& v);
  void validate(const config::Config& cfg) const;
};

}  // namespace mcm::stages
