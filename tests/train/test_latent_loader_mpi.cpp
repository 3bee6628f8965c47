// LatentLoader under mpiexec: loaders built from the real rank and world size; an allgather of
// sample ids shows that the ranks' micro-batches partition each global batch, in order.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <sstream>

#include "../mpi_test_main.hpp"
#include "core/fs.hpp"
#include "dist/dist_context.hpp"
#include "shard_fixture.hpp"
#include "train/latent_loader.hpp"

using namespace mcm;

namespace {

std::string join(const std::vector<int64_t>& v) {
  std::ostringstream os;
  for (auto x : v) os << x << ' ';
  return os.str();
}

std::vector<int64_t> split(const std::string& s) {
  std::istringstream is(s);
  std::vector<int64_t> out;
  for (int64_t x; is >> x;) out.push_back(x);
  return out;
}

}  // namespace

TEST(LatentLoaderMpi, RanksPartitionEveryGlobalBatch) {
  auto& c = test::dist_ctx();
  auto dir = test::shared_temp_dir("LatentLoaderMpi");
  std::vector<std::filesystem::path> shards;
  if (c.is_root()) shards = test::write_shards(dir, "video", {7, 6, 5}, {4, 2, 3, 3}, 3, 4, 2);  // 9 items
  c.barrier();
  shards = {dir / "video-00000.h5", dir / "video-00001.h5", dir / "video-00002.h5"};

  const int W = c.world_size();
  const int64_t B = 1, G = 2 * W;  // accumulate 2 micro-batches per step
  train::LoaderOptions o;
  o.shards = shards;
  o.global_batch = G;
  o.micro_batch = B;
  o.rank = c.rank();
  o.world = W;
  o.seed = 5;
  train::LatentLoader mine(o);
  ASSERT_EQ(mine.accumulation(), 2);
  const int64_t steps = 3 * mine.steps_per_epoch() + 1;

  // Each rank's ids, micro-batch by micro-batch, and the tag of each sample's row.
  std::vector<int64_t> ids, tags;
  for (int64_t s = 0; s < steps; ++s) {
    for (int64_t m = 0; m < 2; ++m) {
      auto b = mine.next();
      EXPECT_EQ(b.step, s);
      EXPECT_EQ(b.micro, m);
      ids.insert(ids.end(), b.sample_ids.begin(), b.sample_ids.end());
      for (int64_t j = 0; j < B; ++j) tags.push_back(static_cast<int64_t>(b.latents[j].flatten()[0].item<float>()));
    }
  }
  auto all_ids = c.allgather(join(ids));
  auto all_tags = c.allgather(join(tags));

  // The reference: one rank reading whole global batches.
  o.rank = 0;
  o.world = 1;
  o.micro_batch = G;
  train::LatentLoader one(o);
  for (int64_t s = 0; s < steps; ++s) {
    auto b = one.next();
    std::vector<int64_t> got_ids, got_tags;
    for (int64_t m = 0; m < 2; ++m) {
      for (int r = 0; r < W; ++r) {
        auto ri = split(all_ids[r]), rt = split(all_tags[r]);
        ASSERT_EQ(ri.size(), static_cast<size_t>(steps * 2 * B));
        for (int64_t j = 0; j < B; ++j) {
          got_ids.push_back(ri[(s * 2 + m) * B + j]);
          got_tags.push_back(rt[(s * 2 + m) * B + j]);
        }
      }
    }
    std::vector<int64_t> want_tags;
    for (int64_t j = 0; j < G; ++j) want_tags.push_back(static_cast<int64_t>(b.latents[j].flatten()[0].item<float>()));
    EXPECT_EQ(got_ids, b.sample_ids) << "step " << s;  // a partition, in the global batch's order
    EXPECT_EQ(got_tags, want_tags) << "step " << s;
    auto sorted = got_ids;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "a sample on two ranks";
  }
  c.barrier();
  if (c.is_root()) fs::remove_tree(dir);
}
