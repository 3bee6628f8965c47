// DistContext under a singleton and under mpiexec -n 2: ranks, node-local split, collectives.
// Own main (LBANN style): one DistContext, results printed by rank 0, exit code reduced.
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "dist/dist_context.hpp"

using namespace mcm;
static dist::DistContext* g_ctx = nullptr;

TEST(Dist, RanksAndLocalSplit) {
  auto& c = *g_ctx;
  EXPECT_GE(c.rank(), 0);
  EXPECT_LT(c.rank(), c.world_size());
  EXPECT_EQ(c.local_size(), c.world_size());  // one node in tests
  EXPECT_EQ(c.local_rank(), c.rank());
  EXPECT_FALSE(c.hostname().empty());
  // CPU machines (CI) have no device; on a GPU machine each rank takes local_rank modulo the
  // visible devices.
  const int n = dist::cuda_device_count();
  if (n == 0) {
    EXPECT_EQ(c.device(), -1);
  } else {
    EXPECT_EQ(c.device(), c.local_rank() % n);
  }
}

TEST(Dist, Collectives) {
  auto& c = *g_ctx;
  std::vector<int64_t> v{c.rank() + 1, 10};
  c.allreduce_sum(v);
  int n = c.world_size();
  EXPECT_EQ(v[0], n * (n + 1) / 2);
  EXPECT_EQ(v[1], 10 * n);
  EXPECT_EQ(c.broadcast(c.is_root() ? "from root" : "ignored"), "from root");
  auto all = c.allgather(std::string(static_cast<size_t>(c.rank() + 1), 'x'));
  ASSERT_EQ(static_cast<int>(all.size()), n);
  for (int r = 0; r < n; ++r) EXPECT_EQ(all[r].size(), static_cast<size_t>(r + 1));
  EXPECT_EQ(c.any(c.rank() == n - 1), true);
  EXPECT_EQ(c.any(false), false);
}

TEST(Dist, MpiErrorsBecomeDistErrorsWithRank) {
  try {
    MCM_MPI_CHECK(MPI_Bcast(nullptr, -1, MPI_INT, 0, MPI_COMM_WORLD));
    ADD_FAILURE() << "no error";
  } catch (const DistError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("MPI_Bcast"), std::string::npos) << m;
    EXPECT_NE(m.find("(rank "), std::string::npos) << m;
  }
}

TEST(Dist, VersionsAreReported) {
  EXPECT_NE(dist::mpi_version().find("MPI"), std::string::npos);
  EXPECT_FALSE(dist::cuda_version().empty());
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  int rc;
  {
    dist::DistContext ctx(&argc, &argv);
    g_ctx = &ctx;
    if (!ctx.is_root()) {
      auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
    }
    rc = RUN_ALL_TESTS();
    std::vector<int64_t> v{rc != 0};
    ctx.allreduce_sum(v);
    rc = v[0] != 0;
  }
  return rc;
}
