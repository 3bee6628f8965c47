// Counter-based streams (Note [rng streams]): Philox4x32-10 known answers, key independence,
// unbiased integers, exact resume, and pinned values that fail on any change to the scheme.
#include "core/rng.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <thread>
#include <vector>

#include "core/error.hpp"
#include "../test_util.hpp"

using namespace mcm;

TEST(Rng, Philox4x32_10KnownAnswers) {
  // Random123 tests/kat_vectors, the three "philox4x32 10" lines: counter, key -> output.
  struct Kat { rng::Counter ctr; rng::PhiloxKey key; rng::Counter want; };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}, {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}, {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const auto& k : kats) EXPECT_EQ(rng::philox4x32_10(k.ctr, k.key), k.want);
}

TEST(Rng, StreamIsPhiloxOfBlockAndIndex) {
  // Position p is lane p % 2 of block p / 2; the index fills counter words 2 and 3.
  auto k = rng::key(7, "distill", 0x0123456789abcdefull, "noise");
  rng::Stream s(k);
  for (uint64_t b = 0; b < 3; ++b) {
    auto r = rng::philox4x32_10({static_cast<uint32_t>(b), 0, 0x89abcdefu, 0x01234567u}, k.philox);
    EXPECT_EQ(s.next_u64(), r[0] | uint64_t{r[1]} << 32);
    EXPECT_EQ(s.next_u64(), r[2] | uint64_t{r[3]} << 32);
  }
}

TEST(Rng, KeysDifferingInAnyFieldAreIndependent) {
  const auto base = rng::key(453645634, "distill", 12, "noise");
  const rng::Key variants[] = {rng::key(453645635, "distill", 12, "noise"), rng::key(453645634, "prep", 12, "noise"),
                               rng::key(453645634, "distill", 13, "noise"), rng::key(453645634, "distill", 12, "timestep"),
                               rng::key(453645634, "distill", 12, ""),       rng::key(0, "distill", 12, "noise")};
  auto draw = [](const rng::Key& k) {
    rng::Stream s(k);
    std::vector<uint64_t> v(256);
    for (auto& x : v) x = s.next_u64();
    return v;
  };
  const auto a = draw(base);
  EXPECT_EQ(a, draw(rng::key(453645634, "distill", 12, "noise")));  // a stream depends only on its key
  for (const auto& k : variants) {
    EXPECT_FALSE(k == base) << rng::to_string(k);
    auto b = draw(k);
    // No shared values, and about half the bits differ (independent 64-bit words: 32 +- 4 each).
    std::set<uint64_t> sa(a.begin(), a.end());
    size_t shared = 0, bits = 0;
    for (size_t i = 0; i < b.size(); ++i) {
      shared += sa.count(b[i]);
      bits += static_cast<size_t>(__builtin_popcountll(a[i] ^ b[i]));
    }
    EXPECT_EQ(shared, 0u) << rng::to_string(k);
    EXPECT_NEAR(static_cast<double>(bits) / b.size(), 32.0, 1.5) << rng::to_string(k);
    // Normals of the two streams are uncorrelated.
    rng::Stream x(base), y(k);
    double sxy = 0;
    for (int i = 0; i < 20000; ++i) sxy += x.normal() * y.normal();
    EXPECT_LT(std::abs(sxy / 20000), 0.03) << rng::to_string(k);  // ~4 standard errors
  }
  // Names are hashed in sequence, not concatenated.
  EXPECT_FALSE(rng::key(1, "ab", 0, "c") == rng::key(1, "a", 0, "bc"));
  EXPECT_EQ(rng::with_index(base, 13), variants[2]);
  EXPECT_EQ(rng::index_of("v-00003/000017"), rng::index_of("v-00003/000017"));
  EXPECT_NE(rng::index_of("v-00003/000017"), rng::index_of("v-00003/000018"));
}

TEST(Rng, SeedsNeverCollideForOneStage) {
  // The seed enters through a bijection: 100k consecutive seeds give 100k distinct Philox keys.
  std::set<std::pair<uint32_t, uint32_t>> keys;
  for (uint64_t s = 0; s < 100000; ++s) {
    auto k = rng::key(s, "prep", 0, "crop");
    keys.insert({k.philox[0], k.philox[1]});
  }
  EXPECT_EQ(keys.size(), 100000u);
}

TEST(Rng, UniformIntIsUnbiasedAndInBounds) {
  rng::Stream s(rng::key(1, "test", 0));
  EXPECT_EQ(s.uniform_int(5, 5), 5);
  EXPECT_EQ(s.uniform_int(-3, -3), -3);
  // Small range: every value, roughly equal counts (chi-square with 9 dof, p ~ 1e-6 bound 45).
  std::map<int64_t, int> hist;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    auto v = s.uniform_int(-4, 5);
    ASSERT_GE(v, -4);
    ASSERT_LE(v, 5);
    ++hist[v];
  }
  EXPECT_EQ(hist.size(), 10u);
  double chi2 = 0;
  for (auto& [v, c] : hist) chi2 += (c - n / 10.0) * (c - n / 10.0) / (n / 10.0);
  EXPECT_LT(chi2, 45.0);
  // range = 3 * 2^62: a plain modulo would make [0, 2^62) twice as likely (1/2 instead of 1/3),
  // and would almost never reject; the exact method rejects a quarter of the draws.
  const uint64_t range = 3 * (uint64_t{1} << 62);
  const int64_t lo = std::numeric_limits<int64_t>::min();
  const int64_t top = static_cast<int64_t>(static_cast<uint64_t>(lo) + range - 1);
  int low_quarter = 0;
  const int m = 30000;
  const uint64_t before = s.counter();
  for (int i = 0; i < m; ++i) {
    auto v = s.uniform_int(lo, top);
    ASSERT_GE(v, lo);
    ASSERT_LE(v, top);
    low_quarter += static_cast<uint64_t>(v) - static_cast<uint64_t>(lo) < (uint64_t{1} << 62);
  }
  EXPECT_NEAR(low_quarter / double(m), 1.0 / 3.0, 0.015);
  EXPECT_NEAR((s.counter() - before) / double(m), 4.0 / 3.0, 0.03);  // expected draws per value
  // The full int64 range uses one value per draw and reaches both signs.
  bool neg = false, pos = false;
  for (int i = 0; i < 64; ++i) {
    auto v = s.uniform_int(std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
    (v < 0 ? neg : pos) = true;
  }
  EXPECT_TRUE(neg && pos);
  test::expect_error<Error>([&] { s.uniform_int(2, 1); }, {"uniform_int(2, 1)", "empty range"});
}

TEST(Rng, UniformAndNormalMoments) {
  rng::Stream s(rng::key(2, "test", 0));
  const int n = 200000;
  double su = 0, su2 = 0, lo = 1, hi = 0, sn = 0, sn2 = 0, sn4 = 0;
  for (int i = 0; i < n; ++i) {
    double u = s.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    su += u, su2 += u * u, lo = std::min(lo, u), hi = std::max(hi, u);
    double z = s.normal();
    ASSERT_TRUE(std::isfinite(z));
    sn += z, sn2 += z * z, sn4 += z * z * z * z;
  }
  EXPECT_NEAR(su / n, 0.5, 0.003);
  EXPECT_NEAR(su2 / n - 0.25, 1.0 / 12, 0.002);
  EXPECT_LT(lo, 1e-4);
  EXPECT_GT(hi, 1 - 1e-4);
  EXPECT_NEAR(sn / n, 0.0, 0.01);
  EXPECT_NEAR(sn2 / n, 1.0, 0.01);
  EXPECT_NEAR(sn4 / n, 3.0, 0.06);  // kurtosis of a normal
}

TEST(Rng, SeekAndResumeRestoreTheStreamExactly) {
  const auto k = rng::key(453645634, "distill", 100, "timestep");
  rng::Stream a(k);
  std::vector<double> first;
  for (int i = 0; i < 7; ++i) first.push_back(a.normal());
  (void)a.uniform_int(0, 49);
  (void)a.next_u64();  // an odd position: mid-block
  const uint64_t saved = a.counter();
  std::vector<uint64_t> rest;
  for (int i = 0; i < 9; ++i) rest.push_back(a.next_u64());
  // A new stream at the saved position (a resumed run) continues identically.
  rng::Stream b(k, saved);
  for (auto v : rest) EXPECT_EQ(b.next_u64(), v);
  // Seeking back replays; seeking anywhere is O(1) and consistent with sequential draws.
  a.seek(0);
  for (double v : first) EXPECT_EQ(a.normal(), v);
  rng::Stream c(k);
  for (int i = 0; i < 1001; ++i) (void)c.next_u64();
  rng::Stream d(k, 1001);
  EXPECT_EQ(c.next_u64(), d.next_u64());
  EXPECT_EQ(d.counter(), 1002u);
  rng::Stream e(k, std::numeric_limits<uint64_t>::max());
  test::expect_error<Error>([&] { e.next_u64(); }, {"exhausted"});
}

TEST(Rng, FillNormalIsSliceAndThreadIndependent) {
  const auto k = rng::key(3, "sample", 5, "noise");
  std::vector<double> all(1001);
  rng::fill_normal(k, 0, all.data(), all.size());
  // Element i comes from block i / 2: the stream's normal() at even positions is element 2j.
  rng::Stream s(k);
  for (size_t j = 0; j < 10; ++j) EXPECT_EQ(s.normal(), all[2 * j]);
  // Any slicing, in any order, by any number of threads, gives the same values.
  for (int threads : {1, 3, 7}) {
    std::vector<double> part(all.size());
    std::vector<std::thread> pool;
    const size_t chunk = (part.size() + threads - 1) / threads;
    for (int t = threads - 1; t >= 0; --t)
      pool.emplace_back([&, t] {
        size_t b = std::min(part.size(), t * chunk), e = std::min(part.size(), b + chunk);
        rng::fill_normal(k, b, part.data() + b, e - b);
      });
    for (auto& th : pool) th.join();
    EXPECT_EQ(part, all) << threads << " threads";
  }
  std::vector<float> f(all.size());
  rng::fill_normal(k, 0, f.data(), f.size());
  for (size_t i = 0; i < f.size(); ++i) ASSERT_EQ(f[i], static_cast<float>(all[i]));
  double m = std::accumulate(all.begin(), all.end(), 0.0) / all.size();
  EXPECT_NEAR(m, 0.0, 0.15);
}

TEST(Rng, Seed64IsReservedAndStable) {
  const auto k = rng::key(453645634, "prep", rng::index_of("00000/000042"), "vae");
  EXPECT_EQ(rng::seed64(k), rng::seed64(k));
  EXPECT_NE(rng::seed64(k), rng::seed64(rng::with_index(k, k.index + 1)));
  // Drawn from block 2^64 - 1, which no stream position reaches.
  auto r = rng::philox4x32_10({0xffffffffu, 0xffffffffu, static_cast<uint32_t>(k.index), static_cast<uint32_t>(k.index >> 32)},
                              k.philox);
  EXPECT_EQ(rng::seed64(k), r[0] | uint64_t{r[1]} << 32);
}

TEST(Rng, PinnedValues) {
  // Any change to the scheme (hashing of names, key mixing, counter layout, conversions) changes
  // these: it changes every random number of every stage, so it must be deliberate.
  const auto k = rng::key(453645634, "distill", 7, "noise");
  EXPECT_EQ(rng::to_string(k), "philox:0b1f6e24dbcc7ba5:0000000000000007");
  rng::Stream s(k);
  EXPECT_EQ(s.next_u64(), 0xfbd209af9d26c1c7ull);
  EXPECT_EQ(s.uniform(), 0x1.00f18dc222b9p-1);
  EXPECT_EQ(s.uniform_int(0, 49), 27);
  // Transcendentals may differ in the last bit between C libraries; a scheme change cannot hide there.
  EXPECT_NEAR(s.normal(), 2.2061398053115044, 1e-14);
  EXPECT_EQ(s.counter(), 5u);
  EXPECT_EQ(rng::seed64(k), 0x9b6c64c40a3d6f1bull);
  EXPECT_EQ(rng::index_of("00000/000042"), 0x7dbc9bf46016be0bull);
  std::vector<int> perm(8);
  std::iota(perm.begin(), perm.end(), 0);
  rng::Stream(rng::key(1, "distill", 0, "order")).shuffle(perm.begin(), perm.end());
  EXPECT_EQ(perm, (std::vector<int>{7, 0, 4, 1, 3, 6, 2, 5}));
}
