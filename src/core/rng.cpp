// Philox4x32-10 and the stream conventions of Note [rng streams].
#include "core/rng.hpp"

#include <cmath>
#include <cstdio>
#include <limits>
#include <numbers>

#include "core/checksum.hpp"
#include "core/error.hpp"

namespace mcm::rng {
namespace {
// Salmon et al. 2011, section 4.2 / Random123 philox.h: multipliers and Weyl key increments.
constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
constexpr uint64_t kSeedBlock = ~uint64_t{0};  // reserved for seed64(); no stream position reaches it

inline void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// splitmix64's finaliser (Steele, Lea, Flood 2014): a bijection on 64 bits.
uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Both 64-bit values of block b of the key's stream.
std::array<uint64_t, 2> block(const Key& k, uint64_t b) {
  Counter c{static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32), static_cast<uint32_t>(k.index),
            static_cast<uint32_t>(k.index >> 32)};
  const Counter r = philox4x32_10(c, k.philox);
  return {r[0] | static_cast<uint64_t>(r[1]) << 32, r[2] | static_cast<uint64_t>(r[3]) << 32};
}

// Box-Muller radius and angle from two 64-bit values: u1 in (0, 1] (log is finite), u2 in [0, 1).
inline void polar(uint64_t a, uint64_t b, double& r, double& theta) {
  const double u1 = static_cast<double>((a >> 11) + 1) * 0x1p-53;
  const double u2 = static_cast<double>(b >> 11) * 0x1p-53;
  r = std::sqrt(-2.0 * std::log(u1));
  theta = 2.0 * std::numbers::pi * u2;
}

template <class T>
void fill_normal_impl(const Key& k, uint64_t first, T* out, size_t n) {
  uint64_t i = first;
  const uint64_t end = first + n;
  while (i < end) {
    const auto v = block(k, i / 2);
    double r, theta;
    polar(v[0], v[1], r, theta);
    const double c = r * std::cos(theta), s = r * std::sin(theta);  // one sincos call
    if (i % 2 == 0) *out++ = static_cast<T>(c), ++i;
    if (i < end) *out++ = static_cast<T>(s), ++i;
  }
}
}  // namespace

Counter philox4x32_10(Counter c, PhiloxKey k) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {  // the key schedule bumps before every round but the first
      k[0] += kW0;
      k[1] += kW1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kM0, c[0], hi0, lo0);
    mulhilo(kM1, c[2], hi1, lo1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
  }
  return c;
}

Key key(uint64_t seed, std::string_view stage, uint64_t index, std::string_view purpose) {
  // Chained hashes keep ("ab", "c") apart from ("a", "bc").
  const uint64_t names = checksum::hash64(purpose, checksum::hash64(stage));
  const uint64_t k = mix64(seed) ^ names;
  return {{static_cast<uint32_t>(k), static_cast<uint32_t>(k >> 32)}, index};
}

Key with_index(Key k, uint64_t index) {
  k.index = index;
  return k;
}

uint64_t index_of(std::string_view name) { return checksum::hash64(name); }

uint64_t seed64(const Key& k) { return block(k, kSeedBlock)[0]; }

std::string to_string(const Key& k) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "philox:%08x%08x:%016llx", k.philox[1], k.philox[0],
                static_cast<unsigned long long>(k.index));
  return buf;
}

void Stream::seek(uint64_t n) { pos_ = n; }

uint64_t Stream::next_u64() {
  if (pos_ == std::numeric_limits<uint64_t>::max()) throw Error(cat("rng stream ", to_string(key_), ": exhausted"));
  const uint64_t b = pos_ / 2;
  if (b != block_) {
    buf_ = block(key_, b);
    block_ = b;
  }
  return buf_[pos_++ % 2];
}

double Stream::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1p-53; }

int64_t Stream::uniform_int(int64_t lo, int64_t hi) {
  if (lo > hi) throw Error(cat("rng uniform_int(", lo, ", ", hi, ") on ", to_string(key_), ": empty range"));
  // Width minus one, in unsigned arithmetic (well defined for the full int64 range).
  const uint64_t span = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo);
  if (span == std::numeric_limits<uint64_t>::max()) return static_cast<int64_t>(next_u64());
  const uint64_t range = span + 1;
  // Values below 2^64 mod range would be over-represented by the modulo: reject them. The rest,
  // [threshold, 2^64), is a whole number of copies of [0, range).
  const uint64_t threshold = (0 - range) % range;
  uint64_t x = next_u64();
  while (x < threshold) x = next_u64();
  return static_cast<int64_t>(static_cast<uint64_t>(lo) + x % range);
}

double Stream::normal() {
  const uint64_t a = next_u64();
  const uint64_t b = next_u64();
  double r, theta;
  polar(a, b, r, theta);
  return r * std::cos(theta);
}

void fill_normal(const Key& k, uint64_t first, double* out, size_t n) { fill_normal_impl(k, first, out, n); }
void fill_normal(const Key& k, uint64_t first, float* out, size_t n) { fill_normal_impl(k, first, out, n); }

}  // namespace mcm::rng
