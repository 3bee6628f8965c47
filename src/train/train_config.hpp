// [train]: the training engine's own settings, shared by every training stage (teacher, distill),
// and OptimConfig: the optimisation keys each training stage has in its own section.
// Registered in train_config.cpp (linked whenever a stage reads the section).
#pragma once
#include <cstdint>
#include <string>

#include "core/config.hpp"

namespace mcm::train {

struct TrainSection {
  static constexpr const char* kName = "train";
  std::string precision = "auto";   ///< "auto" (bf16 autocast on GPU, fp32 on CPU), "fp32", "bf16" or "fp16" (with loss scaling)
  bool deterministic = false;       ///< deterministic algorithms (bitwise resume on CPU; slower cuDNN/atomics paths on GPU)
  double comm_timeout_s = 300.0;    ///< deadline of every collective; a dead or stalled peer ends all ranks with an error naming it
  double bucket_mb = 25.0;          ///< gradient all-reduce bucket size (DDP's default)
  double first_bucket_mb = 1.0;     ///< the first (last-layer) bucket, small so communication starts early
  int64_t checkpoint_every = 100;   ///< optimizer steps between checkpoints (also at the end and on SIGTERM/SIGUSR1)
  int64_t keep_checkpoints = 3;     ///< complete checkpoints kept (older ones are deleted)
  int64_t max_bad_steps = 5;        ///< non-finite loss/gradient steps in a row before the run stops with an error
  int64_t prefetch = 4;             ///< micro-batches the loader reads ahead on its thread
  int64_t log_every = 10;           ///< steps between metrics.jsonl lines (and progress lines)
  bool preload = false;             ///< read the whole latent data set into memory at start (small data sets)
  bool fused_optimizer = true;      ///< on a GPU, AdamW as one fused multi-tensor kernel (false: the per-tensor loop the CPU runs)

  void visit(config::FieldVisitor& v);
  void validate(const config::Config& cfg) const;
};

/// Optimisation keys, declared once and visited inside each training stage's section
/// (`[teacher] lr = ...`), so every stage validates them the same way.
struct OptimConfig {
  int64_t steps = 1000;           ///< optimizer steps
  int64_t batch = 16;             ///< global batch: samples per optimizer step over all ranks
  int64_t micro_batch = 8;        ///< samples per rank per forward; accumulation = batch / (micro_batch x ranks)
  double lr = 1e-4;               ///< peak learning rate (AdamW)
  double lr_min = 0.0;            ///< learning rate at the end of the cosine decay
  int64_t warmup_steps = 50;      ///< linear warm-up steps
  double weight_decay = 0.0;      ///< AdamW decoupled weight decay
  double adam_beta1 = 0.9;        ///< AdamW beta1
  double adam_beta2 = 0.999;      ///< AdamW beta2
  double adam_eps = 1e-8;         ///< AdamW epsilon
  double grad_clip = 1.0;         ///< clip by global gradient norm (0 = off)
  double ema_decay = 0.0;         ///< EMA of the trained weights (0 = off)

  void visit(config::FieldVisitor& v);
  /// `section` names the keys in errors ("teacher.batch").
  void validate(const std::string& section) const;
};

/// Resolved precision for a device: "fp32", "bf16" or "fp16".
std::string resolve_precision(const TrainSection& t, bool cuda);

}  // namespace mcm::train
