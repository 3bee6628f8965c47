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
#include <optional>
#include <vector>
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

/// A second parameter set trained step for step with the main one (a GAN's discriminator): its
/// own loss, optimizer, learning rate, clipping and gradient reducer. Each micro-batch runs the main
/// loss and its backward with the critic's parameters frozen (so the main loss's gradient flows
/// through the critic without reaching it), then the critic's loss and backward; after the last
/// micro-batch both optimizers step. The critic's loss must not backpropagate into the main
/// parameters (detach what it takes from the main pass). A non-finite loss or gradient in either
/// skips the step for both.
struct CriticSpec {
  std::string name = "critic";  ///< names its metrics ("<name>_loss") and optimizer file
  /// lr, betas, eps, weight decay, grad_clip, warmup_steps and lr_min; steps, batch and micro_batch
  /// are the main OptimConfig's (the schedule runs over the same steps).
  OptimConfig optim;
  NamedTensors params;          ///< names distinct from the main parameters'
  LossFn loss;                  ///< the same batch as the main loss, after the main backward
};

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
  /// number of steps done and the step's loss terms as global means (the same on every rank); e.g.
  /// the update of `state`.
  std::function<void(int64_t step, const std::map<std::string, double>& terms)> after_step;
  /// Trained alongside `params` (see CriticSpec), or none.
  std::optional<CriticSpec> critic;
  /// Loaders the loss functions read in step with `loader` (e.g. the image set of a
  /// discriminator's real frames): their positions are checkpointed and restored too.
  std::vector<LatentLoader*> side_loaders;
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
  NamedTensors all_params() const;  // the main parameters, then the critic's
  std::unique_ptr<dist::Reducer> make_reducer(const NamedTensors& params);  // the engine's bucket sizes
  std::string critic_optimizer_file() const;
  nlohmann::json side_loader_states() const;
  std::filesystem::path checkpoints_dir() const { return spec_.dir / "checkpoints"; }

  TrainerSpec spec_;
  const dist::DistContext& ctx_;
  torch::Device device_;
  LatentLoader& loader_;
  LossFn loss_;
  std::string precision_;
  std::unique_ptr<dist::Communicator> comm_;
  std::unique_ptr<dist::Reducer> reducer_, critic_reducer_;
  std::unique_ptr<AdamW> opt_, critic_opt_;
  std::unique_ptr<Ema> ema_;
  LossScaler scaler_;
  int64_t skipped_ = 0, bad_in_row_ = 0;
  double allreduce_alone_s_ = 0;  // all gradients all-reduced with nothing else running (the cost to hide)
};

/// Prepares torch for training: deterministic algorithms when asked (bitwise-reproducible CPU
/// runs and resume), and this rank's default generators seeded from the run seed.
void configure_torch(const TrainSection& engine, uint64_t seed, const std::string& stage, int rank, torch::Device device);

}  // namespace mcm::train
