// LatentLoader: every item once per epoch, the same global batches for any world size, exact
// resume, prefetch-independence, and the error messages (naming the shard).
#include "train/latent_loader.hpp"

#include <gmock/gmock.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <set>
#include <thread>

#include "../test_util.hpp"
#include "core/rng.hpp"
#include "shard_fixture.hpp"

using namespace mcm;
using ::testing::HasSubstr;
using train::Batch;
using train::LatentLoader;
using train::LoaderOptions;

namespace {

LoaderOptions options(std::vector<std::filesystem::path> shards, int64_t global, int64_t micro, int rank = 0,
                      int world = 1) {
  LoaderOptions o;
  o.shards = std::move(shards);
  o.global_batch = global;
  o.micro_batch = micro;
  o.rank = rank;
  o.world = world;
  o.seed = 1234;
  return o;
}

int64_t tag_of(const Batch& b, int64_t i) { return static_cast<int64_t>(b.latents[i].flatten()[0].item<float>()); }

// Checks every value of sample i against the fixture's encoding of its tag.
void expect_row(const Batch& b, int64_t i) {
  const int64_t tag = tag_of(b, i);
  auto lat = b.latents[i].flatten();
  auto want = torch::arange(lat.numel()).remainder(4).to(torch::kFloat).mul(0.25).add(static_cast<double>(tag));
  EXPECT_TRUE(torch::equal(lat, want)) << "sample " << i << " tag " << tag;
  EXPECT_TRUE(torch::equal(b.text_emb[i], torch::full_like(b.text_emb[i], test::text_value(tag))));
  EXPECT_EQ(b.captions[i], test::caption_of(tag));
}

// One step as one rank with micro batch G would see it: micro-batches m = 0.., ranks 0..W-1.
struct Step {
  at::Tensor latents, text;
  std::vector<int64_t> ids;
  std::vector<std::string> keys;
};

std::vector<Step> run_steps(const std::vector<std::filesystem::path>& shards, int64_t global, int64_t micro, int world,
                            int64_t steps, bool one_clip_per_key = true) {
  std::vector<std::unique_ptr<LatentLoader>> ranks;
  for (int r = 0; r < world; ++r) {
    auto o = options(shards, global, micro, r, world);
    o.one_clip_per_key = one_clip_per_key;
    ranks.push_back(std::make_unique<LatentLoader>(o));
  }
  std::vector<Step> out;
  for (int64_t s = 0; s < steps; ++s) {
    std::vector<at::Tensor> lat, txt;
    Step st;
    for (int64_t m = 0; m < ranks[0]->accumulation(); ++m) {
      for (auto& l : ranks) {
        Batch b = l->next();
        EXPECT_EQ(b.step, s);
        EXPECT_EQ(b.micro, m);
        lat.push_back(b.latents);
        txt.push_back(b.text_emb);
        st.ids.insert(st.ids.end(), b.sample_ids.begin(), b.sample_ids.end());
        st.keys.insert(st.keys.end(), b.keys.begin(), b.keys.end());
      }
    }
    st.latents = torch::cat(lat);
    st.text = torch::cat(txt);
    out.push_back(std::move(st));
  }
  return out;
}

void expect_same_steps(const std::vector<Step>& a, const std::vector<Step>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t s = 0; s < a.size(); ++s) {
    EXPECT_EQ(a[s].ids, b[s].ids) << what << " step " << s;
    EXPECT_EQ(a[s].keys, b[s].keys) << what << " step " << s;
    EXPECT_TRUE(torch::equal(a[s].latents, b[s].latents)) << what << " step " << s;
    EXPECT_TRUE(torch::equal(a[s].text, b[s].text)) << what << " step " << s;
  }
}

// Gives the prefetch thread time to fill its queue, so that restore() has batches to discard.
void let_the_thread_read_ahead() { std::this_thread::sleep_for(std::chrono::milliseconds(100)); }

std::vector<Batch> take(LatentLoader& l, int64_t n) {
  std::vector<Batch> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(l.next());
  return out;
}

void expect_same_batches(const std::vector<Batch>& a, const std::vector<Batch>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].step, b[i].step) << what << " batch " << i;
    EXPECT_EQ(a[i].micro, b[i].micro) << what << " batch " << i;
    EXPECT_EQ(a[i].epoch, b[i].epoch) << what << " batch " << i;
    EXPECT_EQ(a[i].sample_ids, b[i].sample_ids) << what << " batch " << i;
    EXPECT_EQ(a[i].keys, b[i].keys) << what << " batch " << i;
    EXPECT_TRUE(torch::equal(a[i].latents, b[i].latents)) << what << " batch " << i;
    EXPECT_TRUE(torch::equal(a[i].text_emb, b[i].text_emb)) << what << " batch " << i;
  }
}

}  // namespace

TEST(LatentLoader, PermutationIsThePhiloxFisherYates) {
  auto p = train::epoch_permutation(7, "loader", 3, 50);
  std::vector<int64_t> want(50);
  std::iota(want.begin(), want.end(), 0);
  rng::Stream s(rng::key(7, "loader", 3, "permutation"));
  for (int64_t i = 49; i > 0; --i) std::swap(want[i], want[s.uniform_int(0, i)]);
  EXPECT_EQ(p, want);
  EXPECT_NE(p, train::epoch_permutation(7, "loader", 4, 50));
  EXPECT_NE(p, train::epoch_permutation(7, "images", 3, 50));
  EXPECT_NE(p, train::epoch_permutation(8, "loader", 3, 50));
}

TEST(LatentLoader, EveryItemOncePerEpochInThePermutationsOrder) {
  auto d = test::scratch();
  auto shards = test::write_shards(d, "video", {5, 7, 4});
  LatentLoader l(options(shards, 4, 2));
  EXPECT_EQ(l.items(), 16);
  EXPECT_EQ(l.steps_per_epoch(), 4);
  EXPECT_EQ(l.accumulation(), 2);
  EXPECT_EQ(l.latent_shape(), (std::vector<int64_t>{4, 2, 3, 3}));
  EXPECT_EQ(l.text_shape(), (std::vector<int64_t>{3, 4}));
  std::vector<std::vector<int64_t>> orders;
  for (int64_t e = 0; e < 3; ++e) {
    auto perm = train::epoch_permutation(1234, "loader", e, 16);
    std::vector<int64_t> order;
    for (int64_t i = 0; i < 8; ++i) {
      Batch b = l.next();
      EXPECT_EQ(b.epoch, e);
      EXPECT_EQ(b.step, e * 4 + i / 2);
      EXPECT_EQ(b.micro, i % 2);
      ASSERT_EQ(b.latents.sizes(), (std::vector<int64_t>{2, 4, 2, 3, 3}));
      ASSERT_EQ(b.text_emb.sizes(), (std::vector<int64_t>{2, 3, 4}));
      EXPECT_EQ(b.latents.scalar_type(), torch::kFloat);
      for (int64_t j = 0; j < 2; ++j) {
        const int64_t pos = i * 2 + j;
        EXPECT_EQ(b.sample_ids[j], e * 16 + pos);
        EXPECT_EQ(tag_of(b, j), perm[pos]);  // shards sorted by path, rows in order
        expect_row(b, j);
        order.push_back(tag_of(b, j));
      }
    }
    auto sorted = order;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> all(16);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(sorted, all) << "epoch " << e;
    orders.push_back(order);
  }
  EXPECT_NE(orders[0], orders[1]);
  EXPECT_NE(orders[1], orders[2]);
}

TEST(LatentLoader, IncompleteLastGlobalBatchIsDropped) {
  auto d = test::scratch();
  LatentLoader l(options(test::write_shards(d, "video", {5, 7, 5}), 4, 4));
  EXPECT_EQ(l.items(), 17);
  EXPECT_EQ(l.steps_per_epoch(), 4);
  std::set<int64_t> seen;
  for (int i = 0; i < 4; ++i) {
    Batch b = l.next();
    for (int64_t j = 0; j < 4; ++j) EXPECT_TRUE(seen.insert(tag_of(b, j)).second);
  }
  EXPECT_EQ(seen.size(), 16u);
  EXPECT_EQ(l.next().epoch, 1);
}

TEST(LatentLoader, ImageShards) {
  auto d = test::scratch();
  auto o = options(test::write_shards(d, "image", {4, 5}, {4, 6, 6}, 2, 8), 3, 3);
  o.expect_latent = {4, 6, 6};
  o.expect_text = {2, 8};
  LatentLoader l(o);
  Batch b = l.next();
  EXPECT_EQ(b.latents.sizes(), (std::vector<int64_t>{3, 4, 6, 6}));
  EXPECT_EQ(b.text_emb.sizes(), (std::vector<int64_t>{3, 2, 8}));
  for (int64_t j = 0; j < 3; ++j) expect_row(b, j);
}

TEST(LatentLoader, KeyGroupsGiveOneClipPerEpoch) {
  auto d = test::scratch();
  auto shards = test::write_shards(d, "video", {8, 4}, {4, 2, 3, 3}, 3, 4, /*clips=*/2);
  LatentLoader l(options(shards, 3, 3));
  EXPECT_EQ(l.items(), 6);
  std::map<std::string, std::set<int64_t>> picked;
  for (int64_t e = 0; e < 8; ++e) {
    std::set<std::string> keys;
    for (int i = 0; i < 2; ++i) {
      Batch b = l.next();
      for (int64_t j = 0; j < 3; ++j) {
        EXPECT_TRUE(keys.insert(b.keys[j]).second) << "key twice in epoch " << e;
        const int64_t tag = tag_of(b, j);
        // Tags 2k and 2k+1 are the two clips of one key (shard sizes are even).
        const std::string want = tag < 8 ? cat("video-00000-", tag / 2) : cat("video-00001-", (tag - 8) / 2);
        EXPECT_EQ(b.keys[j], want);
        picked[b.keys[j]].insert(tag);
      }
    }
    EXPECT_EQ(keys.size(), 6u);
  }
  bool both = false;
  for (auto& [k, tags] : picked) both |= tags.size() == 2;
  EXPECT_TRUE(both) << "no key had both of its clips chosen in 8 epochs";
  auto o = options(shards, 3, 3);
  o.one_clip_per_key = false;
  EXPECT_EQ(LatentLoader(o).items(), 12);
}

TEST(LatentLoader, SameGlobalBatchesForAnyWorldSize) {
  auto d = test::scratch();
  auto shards = test::write_shards(d, "video", {10, 6}, {4, 2, 3, 3}, 3, 4, /*clips=*/2);  // 8 items
  const int64_t G = 4, steps = 5;  // 2 steps per epoch: crosses two epoch boundaries
  auto ref = run_steps(shards, G, 4, 1, steps);
  expect_same_steps(ref, run_steps(shards, G, 2, 1, steps), "1 rank x 2 (accumulate 2)");
  expect_same_steps(ref, run_steps(shards, G, 2, 2, steps), "2 ranks x 2");
  expect_same_steps(ref, run_steps(shards, G, 1, 2, steps), "2 ranks x 1 (accumulate 2)");
  expect_same_steps(ref, run_steps(shards, G, 1, 4, steps), "4 ranks x 1");
  for (auto& s : ref) {  // and each step's sample set is a global batch of the permutation
    for (size_t i = 0; i < s.ids.size(); ++i) EXPECT_EQ(s.ids[i], s.ids[0] + static_cast<int64_t>(i));
  }
}

TEST(LatentLoader, AccumulationSlicesOfEachRank) {
  auto d = test::scratch();
  auto shards = test::write_shards(d, "video", {9, 7});  // 16 items, G = 8: 2 steps per epoch
  for (int r = 0; r < 2; ++r) {
    LatentLoader l(options(shards, 8, 2, r, 2));
    ASSERT_EQ(l.accumulation(), 2);
    for (int64_t step = 0; step < 4; ++step) {
      for (int64_t m = 0; m < 2; ++m) {
        Batch b = l.next();
        const int64_t epoch = step / 2;
        auto perm = train::epoch_permutation(1234, "loader", epoch, 16);
        for (int64_t j = 0; j < 2; ++j) {
          const int64_t pos = (step % 2) * 8 + m * 2 * 2 + r * 2 + j;
          EXPECT_EQ(b.sample_ids[j], epoch * 16 + pos);
          EXPECT_EQ(tag_of(b, j), perm[pos]);
        }
      }
    }
  }
}

TEST(LatentLoader, PrefetchNeverChangesResults) {
  auto d = test::scratch();
  auto shards = test::write_shards(d, "video", {6, 6}, {4, 2, 3, 3}, 3, 4, 2);
  std::vector<std::vector<Batch>> runs;
  for (int p : {0, 1, 4}) {
    auto o = options(shards, 2, 1);
    o.prefetch = p;
    LatentLoader l(o);
    runs.push_back(take(l, 20));  // 3 steps per epoch: several epochs
  }
  expect_same_batches(runs[0], runs[1], "prefetch 0 vs 1");
  expect_same_batches(runs[0], runs[2], "prefetch 0 vs 4");
}

TEST(LatentLoader, PreloadServesTheSameBatches) {
  auto d = test::scratch();
  auto shards = test::write_shards(d, "video", {6, 6}, {4, 2, 3, 3}, 3, 4, 2);
  std::vector<std::vector<Batch>> runs;
  for (bool pre : {false, true}) {
    auto o = options(shards, 2, 1);
    o.preload = pre;
    LatentLoader l(o);
    runs.push_back(take(l, 20));
  }
  expect_same_batches(runs[0], runs[1], "HDF5 vs preloaded");
}

TEST(LatentLoader, RestoreContinuesExactly) {
  auto d = test::scratch();
  auto shards = test::write_shards(d, "video", {5, 7, 4});  // 16 items, G 4, micro 2: 8 per epoch
  auto o = options(shards, 4, 2);
  std::vector<Batch> ref;
  {
    LatentLoader l(o);
    ref = take(l, 24);
  }
  for (int64_t cut : {3, 7, 8, 13}) {  // mid-step, last of epoch 0, first of epoch 1, mid-epoch 1
    nlohmann::json s;
    {
      LatentLoader a(o);
      take(a, cut);
      s = nlohmann::json::parse(a.state().dump());  // as a checkpoint stores it
    }
    EXPECT_EQ(s["step"], cut / 2);
    EXPECT_EQ(s["micro"], cut % 2);
    EXPECT_EQ(s["epoch"], cut / 8);
    auto o2 = o;
    o2.prefetch = static_cast<int>(cut % 3);
    LatentLoader b(o2);
    let_the_thread_read_ahead();
    b.restore(s);
    EXPECT_EQ(b.state(), s);
    expect_same_batches(take(b, 24 - cut), std::vector<Batch>(ref.begin() + cut, ref.end()), cat("cut ", cut));
  }
  // Rewinding a running loader discards what it prefetched.
  auto o4 = o;
  o4.prefetch = 4;
  LatentLoader c(o4);
  take(c, 3);
  auto s3 = c.state();
  take(c, 10);
  let_the_thread_read_ahead();
  c.restore(s3);
  expect_same_batches(take(c, 21), std::vector<Batch>(ref.begin() + 3, ref.end()), "rewind");
}

TEST(LatentLoader, RestoreAtAStepBoundaryUnderAnotherWorldSize) {
  auto d = test::scratch();
  auto shards = test::write_shards(d, "video", {5, 7, 4});
  auto ref = run_steps(shards, 4, 4, 1, 6);
  LatentLoader one(options(shards, 4, 2));
  take(one, 2 * 3);  // three steps
  auto s = one.state();
  std::vector<std::unique_ptr<LatentLoader>> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.push_back(std::make_unique<LatentLoader>(options(shards, 4, 1, r, 2)));
    ranks.back()->restore(s);
  }
  for (int64_t step = 3; step < 6; ++step) {
    std::vector<int64_t> ids;
    std::vector<at::Tensor> lat;
    for (int m = 0; m < 2; ++m) {
      for (auto& l : ranks) {
        Batch b = l->next();
        EXPECT_EQ(b.step, step);
        ids.insert(ids.end(), b.sample_ids.begin(), b.sample_ids.end());
        lat.push_back(b.latents);
      }
    }
    EXPECT_EQ(ids, ref[step].ids);
    EXPECT_TRUE(torch::equal(torch::cat(lat), ref[step].latents));
  }
}

TEST(LatentLoader, RestoreRefusesAnotherDataSetOrBatch) {
  auto d = test::scratch();
  std::filesystem::create_directories(d / "a");
  std::filesystem::create_directories(d / "b");
  auto shards = test::write_shards(d / "a", "video", {5, 7, 4});
  auto other = test::write_shards(d / "b", "video", {5, 7, 5});
  LatentLoader a(options(shards, 4, 2));
  a.next();
  auto s = a.state();  // mid-step: micro 1 of 2
  test::expect_error<ConfigError>([&] { LatentLoader(options(other, 4, 2)).restore(s); }, {"another data set"});
  test::expect_error<ConfigError>([&] { LatentLoader(options(shards, 8, 2)).restore(s); },
                                  {"global batch 4", "this loader has 8"});
  test::expect_error<ConfigError>([&] { LatentLoader(options(shards, 4, 1)).restore(s); },
                                  {"mid-step (micro 1 of 2)", "accumulates 4"});
  auto o = options(shards, 4, 2);
  o.seed = 99;
  test::expect_error<ConfigError>([&] { LatentLoader(o).restore(s); }, {"seed 1234"});
  test::expect_error<ConfigError>([&] { LatentLoader(options(shards, 4, 2)).restore({{"step", 1}}); },
                                  {"not a loader state"});
  a.next();
  LatentLoader(options(shards, 4, 1)).restore(a.state());  // a step boundary: any accumulation
}

TEST(LatentLoader, OptionErrors) {
  auto d = test::scratch();
  auto shards = test::write_shards(d, "video", {5, 7});
  try {
    LatentLoader l(options(shards, 6, 2, 0, 2));
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("batch 6 is not a multiple of micro_batch 2 x 2 ranks"));
  }
  test::expect_error<ConfigError>([&] { LatentLoader l(options({}, 4, 2)); }, {"no shards"});
  test::expect_error<ConfigError>([&] { LatentLoader l(options(shards, 4, 2, 2, 2)); }, {"rank 2 of world 2"});
  test::expect_error<ConfigError>([&] { LatentLoader l(options(shards, 0, 2)); }, {"must be positive"});
  test::expect_error<ConfigError>([&] { LatentLoader l(options({shards[0], shards[1], shards[0]}, 4, 2)); },
                                  {"listed twice", shards[0].filename().string()});
  test::expect_error<ConfigError>([&] { LatentLoader l(options(shards, 16, 2)); },
                                  {"12 items", "global batch is 16", "video-00000.h5"});
}

TEST(LatentLoader, ShardErrorsNameTheFile) {
  auto d = test::scratch();
  auto good = test::write_shards(d, "video", {5});
  auto expect_file_error = [](auto&& make, const std::string& file, const std::string& what) {
    try {
      make();
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(file));
      EXPECT_THAT(e.what(), HasSubstr(what));
    }
  };
  // 0 rows.
  { io::LatentShardWriter w(d / "empty.h5", io::LatentShardSpec{{4, 2, 3, 3}, 3, 4, 0}); w.finish(); }
  test::expect_error<DataError>([&] { LatentLoader l(options({good[0], d / "empty.h5"}, 4, 2)); },
                                {"empty.h5", "0 rows"});
  // Unreadable, missing.
  test::write_text(d / "garbage.h5", "not hdf5");
  test::expect_error<IoError>([&] { LatentLoader l(options({good[0], d / "garbage.h5"}, 4, 2)); },
                              {"cannot read shard", "garbage.h5"});
  test::expect_error<IoError>([&] { LatentLoader l(options({good[0], d / "missing.h5"}, 4, 2)); },
                              {"missing.h5", "does not exist"});
  // Mixed kinds and sizes.
  test::write_shard(d / "x-image.h5", {4, 3, 3}, 3, 4, 5, 0);
  expect_file_error([&] { LatentLoader l(options({good[0], d / "x-image.h5"}, 4, 2)); }, "x-image.h5",
                    "has latents [4, 3, 3] per sample but shard");
  test::write_shard(d / "x-text.h5", {4, 2, 3, 3}, 5, 4, 5, 0);
  expect_file_error([&] { LatentLoader l(options({good[0], d / "x-text.h5"}, 4, 2)); }, "x-text.h5",
                    "has text_emb [5, 4] per sample");
  // Expected shapes.
  auto o = options(good, 4, 2);
  o.expect_latent = {4, 8, 3, 3};
  expect_file_error([&] { LatentLoader l(o); }, "video-00000.h5", "expected latent shape [4, 8, 3, 3], found [4, 2, 3, 3]");
  o.expect_latent = {};
  o.expect_text = {77, 4};
  expect_file_error([&] { LatentLoader l(o); }, "video-00000.h5", "expected text_emb shape [77, 4], found [3, 4]");
}

TEST(LatentLoader, ReadErrorsOnTheThreadComeBackFromNext) {
  auto d = test::scratch();
  auto shards = test::write_shards(d, "video", {6, 6});
  auto o = options(shards, 4, 2);
  o.prefetch = 0;  // nothing is read before the shard is damaged
  LatentLoader l(o);
  test::write_text(d / "bad.tmp", "no longer hdf5");
  std::filesystem::rename(d / "bad.tmp", d / "video-00001.h5");
  try {
    for (int i = 0; i < 6; ++i) l.next();  // the first epoch reads both shards
    ADD_FAILURE() << "no error";
  } catch (const IoError& e) {
    EXPECT_THAT(e.what(), HasSubstr("video-00001.h5"));
    EXPECT_THAT(e.what(), HasSubstr("(rank 0)"));
  }
  EXPECT_THROW(l.next(), IoError);  // and again: the thread has stopped
}
