// Counter-based random streams for every stage: Philox4x32-10 keyed by (seed, stage, index,
// purpose), so a draw depends only on what it is for, never on rank, world size or thread count.
#pragma once
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>

// Note [rng streams]
// ~~~~~~~~~~~~~~~~~~
// One scheme serves every stage (synth, prep, distill, sample, eval). A draw is named, not
// sequenced: `key(seed, stage, index, purpose)` names one stream, where
//   seed     the run seed (config `run.seed`),
//   stage    the stage name ("prep", "distill", ...),
//   index    a rank-independent sample or step index: the global sample number, the optimizer
//            step, or `index_of(name)` for items named by a string (a clip's key),
//   purpose  an optional sub-stream ("noise", "timestep", "crop", ...), so two uses of the same
//            sample never share numbers.
// The generator is Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy
// as 1, 2, 3", SC 2011), a bijection of a 128-bit counter under a 64-bit key, checked against
// Random123's published known-answer vectors. The mapping:
//   Philox key     = splitmix64(seed) XOR xxh3(purpose, seed = xxh3(stage))   (64 bits)
//   counter[0..1]  = block number b (64 bits)          counter[2..3] = index (64 bits)
// Block b yields 4 x 32 bits = two 64-bit values, so a stream is the sequence of 64-bit values at
// positions 0, 1, 2, ... (position p is lane p % 2 of block p / 2). The position is the whole state
// of a Stream: `counter()` reads it and `seek()` restores it, which is all a checkpoint needs.
// The seed enters through a bijection, so for one (stage, purpose) distinct seeds never collide;
// distinct indices never collide by construction; names collide only by a 64-bit hash accident.
// Block 2^64 - 1 (beyond any stream position) is reserved for seed64(), the seed handed to
// third-party generators (at::CPUGeneratorImpl, std::mt19937_64).
// Conversions are fixed here, not left to <random>, whose distributions differ between standard
// libraries: uniform() takes the top 53 bits; uniform_int() rejects below 2^64 mod range (exact,
// no modulo bias); normal() is Box-Muller on two values. fill_normal() fills element i from block
// i / 2 (cosine branch for even i, sine for odd i), so any slice of a tensor can be filled
// independently, by any thread, with the same result.
// Any change to these rules changes every number downstream: tests/core/test_rng.cpp pins values.

namespace mcm::rng {

/// Philox4x32 counter (4 words) and key (2 words), in Random123's word order.
using Counter = std::array<uint32_t, 4>;
using PhiloxKey = std::array<uint32_t, 2>;
/// The Philox4x32-10 block function (10 rounds): the published algorithm, no state.
Counter philox4x32_10(Counter ctr, PhiloxKey key);

/// Names one stream; see Note [rng streams]. Cheap to copy, comparable.
struct Key {
  PhiloxKey philox{};  ///< seed mixed with stage and purpose
  uint64_t index = 0;  ///< the rank-independent sample or step index (counter words 2..3)
  bool operator==(const Key&) const = default;
};

/// The stream for `purpose` of item `index` of `stage` in a run seeded with `seed`.
Key key(uint64_t seed, std::string_view stage, uint64_t index, std::string_view purpose = "");
/// The same stream family at another index (e.g. the next sample).
Key with_index(Key k, uint64_t index);
/// A stable 64-bit index for an item named by a string (a clip's key): xxh3 of the name.
uint64_t index_of(std::string_view name);
/// A 64-bit seed for a third-party generator, drawn from the key's reserved block.
uint64_t seed64(const Key& k);
/// "philox:<key hex>:<index hex>", for logs and error messages.
std::string to_string(const Key& k);

/// A position in one key's stream of 64-bit values. Its only state is (key, position).
class Stream {
 public:
  explicit Stream(const Key& k, uint64_t position = 0) : key_(k) { seek(position); }
  const Key& key() const { return key_; }
  /// Number of 64-bit values consumed so far; Stream(key, counter()) continues exactly here.
  uint64_t counter() const { return pos_; }
  /// Moves to position n (any n, forwards or backwards) in O(1).
  void seek(uint64_t n);
  /// The next 64 random bits.
  uint64_t next_u64();
  /// Uniform on [0, 1) with 53 random bits (one value).
  double uniform();
  /// Uniform integer on [lo, hi], both inclusive, exactly unbiased (rejection; usually one value).
  int64_t uniform_int(int64_t lo, int64_t hi);
  /// Standard normal by Box-Muller's cosine branch (two values).
  double normal();
  /// Fisher-Yates shuffle with uniform_int: the same permutation on every platform.
  template <class It>
  void shuffle(It first, It last) {
    const auto n = static_cast<int64_t>(std::distance(first, last));
    for (int64_t i = n - 1; i > 0; --i) std::iter_swap(first + i, first + uniform_int(0, i));
  }

 private:
  Key key_;
  uint64_t pos_ = 0;
  uint64_t block_ = ~uint64_t{0};  ///< block held in buf_ (~0 is never a stream block)
  std::array<uint64_t, 2> buf_{};
};

/// Standard normals for elements [first, first + n) of the key's normal sequence (Note [rng
/// streams]): element i depends only on (key, i), so slices may be filled in any order.
void fill_normal(const Key& k, uint64_t first, double* out, size_t n);
/// The same values rounded to float32.
void fill_normal(const Key& k, uint64_t first, float* out, size_t n);

}  // namespace mcm::rng
