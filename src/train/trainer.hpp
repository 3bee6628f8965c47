// The training loop every training stage runs (teacher, distill): data-parallel over ranks with
// bucketed gradient all-reduce overlapping backward, gradient accumulation, clipping by global
// norm, AdamW with a cosine schedule, EMA, autocast (bf16/fp16, fp32 master weights), NaN/Inf
// step skipping, metrics.jsonl and a progress line, atomic checkpoints every N steps and on
// SIGTERM/SIGUSR1, and exact resume from the newest complete checkpoint.
// Include only from torch translation units.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "dist/communicator.hpp"
#include "dist/dist_context.hpp"
#include "train/latent_loader.hpp"
#include "train/optim.hpp"
#include "train/train_config.hpp"

namespace mcm::dist {
class Reducer;
}

namespace mcm::train {

/// What a stage's loss function returns for one micro-batch on this rank.
struct LossTerms {
  torch::Tensor loss;                    ///< scalar, the micro-batch mean; backpropagated
  std::map<std::string, double> logged;  ///< extra terms for metrics.jsonl (same keys every step, every rank)
};
/// Loss of one micro-batch at optimizer step `step` (runs under autocast when enabled).
using LossFn = std::function<LossTerms(const Batch& batch, int64_t step)>;

struct TrainerSpec {
  std::string stage;                  ///< names metrics, logs and the RNG streams ("teacher")
  std::filesystem::path dir;          ///< <run>/<stage>: checkpoints/, metrics.jsonl, heartbeat/
  OptimConfig optim;
  TrainSection engine;
  NamedTensors params;                ///< trainable parameters (reference names, registration order)
  /// Training state that the optimizer does not update but a checkpoint must hold (e.g. the EMA
  /// target copy of MCM's motion head): written to state.safetensors, restored in place on resume.
  NamedTensors state;
  /// Runs on every rank after each applied optimizer step (not after skipped ones), with the
  /// number of steps done; e.g. the update of `state`.
  std::function<void(int64_t step)> after_step;
  nlohmann::json identity;            ///< config a checkpoint must match to be resumed (flat key -> value)
  uint64_t seed = 0;                  ///< run seed
  /// Rank 0, after each complete checkpoint: record `done_file` (e.g. in the manifest).
  std::function<void(const std::filesystem::path& done_file, int64_t step)> on_checkpoint;
};

struct TrainResult {
  int64_t step = 0;            ///< optimizer steps done (== optim.steps when finished)
  int64_t resumed_from = -1;   ///< checkpoint step resumed from, or -1
  int stop_signal = 0;         ///< SIGTERM/SIGUSR1 that stopped the run early, or 0
  int64_t skipped_steps = 0;   ///< non-finite steps skipped over the whole run
  double last_loss = 0;        ///< global mean loss of the last step
  double seconds = 0;          ///< wall time of this process's loop
};

class Trainer {
 public:
  /// Builds the communicator for `device` (MPI on CPU, NCCL on CUDA) and the gradient reducer.
  Trainer(TrainerSpec spec, const dist::DistContext& ctx, torch::Device device, LatentLoader& loader, LossFn loss);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  /// Resumes from the newest complete checkpoint if any, trains to optim.steps or until a stop
  /// signal (then checkpoints and returns with stop_signal set). Collective.
  TrainResult run();
  /// The EMA weights (nullptr when optim.ema_decay == 0).
  const Ema* ema() const { return ema_.get(); }
  dist::Communicator& comm() { return *comm_; }
  /// "fp32", "bf16" or "fp16".
  const std::string& precision() const { return precision_; }

 private:
  int64_t resume();
  void checkpoint(int64_t step);
  std::filesystem::path checkpoints_dir() const { return spec_.dir / "checkpoints"; }

  TrainerSpec spec_;
  const dist::DistContext& ctx_;
  torch::Device device_;
  LatentLoader& loader_;
  LossFn loss_;
  std::string precision_;
  std::unique_ptr<dist::Communicator> comm_;
  std::unique_ptr<dist::Reducer> reducer_;
  std::unique_ptr<AdamW> opt_;
  std::unique_ptr<Ema> ema_;
  LossScaler scaler_;
  int64_t skipped_ = 0, bad_in_row_ = 0;
  double allreduce_alone_s_ = 0;  // all gradients all-reduced with nothing else running (the cost to hide)
};

/// Prepares torch for training: deterministic algorithms when asked (bitwise-reproducible CPU
/// runs and resume), and this rank's default generators seeded from the run seed.
void configure_torch(const TrainSection& engine, uint64_t seed, const std::string& stage, int rank, torch::Device device);

}  // namespace mcm::train
