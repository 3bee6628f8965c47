// The training data loader over HDF5 prep shards: a seeded per-epoch permutation of the whole data
// set, cut into global batches that do not depend on the number of ranks, read ahead on one
// background thread, with an exact, restorable position for checkpoints.
#pragma once
#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace mcm::train {

struct LoaderOptions {
  /// HDF5 latent shards (video [N,C,T,H,W] or image [N,C,H,W]; all of one kind). Order does not matter.
  std::vector<std::filesystem::path> shards;
  /// Samples per optimizer step over all ranks.
  int64_t global_batch = 0;
  /// Samples per rank per forward.
  int64_t micro_batch = 0;
  /// This process's rank and the world size (from the DistContext).
  int rank = 0, world = 1;
  /// The run seed.
  uint64_t seed = 0;
  /// rng stage name, so two loaders (videos, images) draw different orders.
  std::string stream = "loader";
  /// Micro-batches read ahead on the background thread (0: read on demand).
  int prefetch = 2;
  /// Rows sharing a key within a shard (prep.clips_per_video > 1) form one item; each epoch picks
  /// one of its rows, drawn from (epoch, item).
  bool one_clip_per_key = true;
  /// Read every row into memory once, at start (data sets that fit in RAM; every later batch is
  /// a memory copy). The batches are the same either way.
  bool preload = false;
  /// Expected per-sample latent shape, e.g. {C, T, H, W} (empty = no check).
  std::vector<int64_t> expect_latent;
  /// Expected text embedding shape {L, D} (empty = no check).
  std::vector<int64_t> expect_text;
};

/// One rank's micro-batch.
struct Batch {
  at::Tensor latents;   ///< [B, ...] float32 (from the shards' float16)
  at::Tensor text_emb;  ///< [B, L, D] float32
  std::vector<std::string> captions, keys;
  /// Rank-independent id per sample: epoch * items() + position in the epoch's order. Use it to
  /// key per-sample randomness (noise, timesteps) so it does not depend on the world size.
  std::vector<int64_t> sample_ids;
  int64_t step = 0;   ///< global batch number since the start of training (its optimizer step)
  int64_t micro = 0;  ///< micro-batch index within the step, 0 .. accumulation() - 1
  int64_t epoch = 0;
};

/// Epoch `epoch`'s order of `items` items: Fisher-Yates with rng::Stream::uniform_int on the
/// stream rng::key(seed, stream, epoch, "permutation"). The loader's order, exposed for tests.
std::vector<int64_t> epoch_permutation(uint64_t seed, const std::string& stream, int64_t epoch, int64_t items);

// Note [loader order]
// ~~~~~~~~~~~~~~~~~~~
// The global order is the shards sorted by path, rows in order; an item is a row, or with
// one_clip_per_key the rows of one key within a shard (ordered by their first row). Epoch e uses
// epoch_permutation(seed, stream, e, items). Global batch g of epoch e is positions
// [g*G, (g+1)*G) of that permutation (the items past the last whole global batch are dropped that
// epoch, different ones every epoch); micro-batch m of rank r takes positions
// [m*W*B + r*B, m*W*B + r*B + B) of it (B = micro_batch, W = world). So every step's samples are
// the same for any (world, micro_batch) with the same global batch, and the concatenation of
// rank 0..W-1's micro-batch m is, in order, what one rank with micro batch W*B gets.

/// Reads this rank's micro-batches; see Note [loader order] and Note [loader thread].
class LatentLoader {
 public:
  /// Opens and validates every shard (errors name the file), then starts the prefetch thread.
  /// Throws ConfigError for inconsistent options, IoError for unreadable shards, DataError for
  /// empty or mis-shaped shards.
  explicit LatentLoader(LoaderOptions opts);
  /// Stops and joins the thread.
  ~LatentLoader();
  LatentLoader(const LatentLoader&) = delete;
  LatentLoader& operator=(const LatentLoader&) = delete;

  /// Micro-batches per optimizer step: global_batch / (micro_batch * world).
  int64_t accumulation() const;
  /// Samples (or key groups) per epoch.
  int64_t items() const;
  /// items / global_batch (an incomplete last global batch is dropped).
  int64_t steps_per_epoch() const;
  /// Per-sample latent shape ({C, T, H, W} or {C, H, W}) and text shape {L, D} of the shards.
  const std::vector<int64_t>& latent_shape() const;
  const std::vector<int64_t>& text_shape() const;
  /// Identifies the data set: a hash of the shard file names and row counts.
  const std::string& fingerprint() const;

  /// This rank's next micro-batch. Rethrows a read error of the background thread (naming the file).
  Batch next();
  /// The exact position of the next micro-batch next() returns (not of the prefetched ones):
  /// {"step", "micro", "epoch", "global_batch", "accumulation", "items", "fingerprint", "seed",
  /// "stream"}. The same on every rank, so rank 0's copy restores every rank.
  nlohmann::json state() const;
  /// Continues from `state` (prefetched batches are discarded). Throws ConfigError for a state of
  /// another data set, global batch, seed or stream, or one taken mid-step under another accumulation.
  void restore(const nlohmann::json& state);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mcm::train
