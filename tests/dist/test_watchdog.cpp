// Watchdog pieces without MPI: the heartbeat file a Liveness writes, and the diagnosis of a
// timed-out collective from the peers' heartbeats.
#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>

#include "dist/watchdog.hpp"
#include "../mpi_test_main.hpp"
#include "core/fs.hpp"

using namespace mcm::dist;

namespace {
Heartbeat beat(int rank, int64_t step, const std::string& op, double time) {
  return Heartbeat{rank, step, op, 1000 + rank, "node" + std::to_string(rank), time};
}
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
}  // namespace

TEST(Watchdog, StalePeerIsNamedWithItsLastStepAndOp) {
  const double now = 1000;
  std::vector<std::optional<Heartbeat>> b{beat(0, 17, "allreduce grad bucket 3", now),
                                          beat(1, 16, "forward", now - 31.2)};
  const auto m = describe_peers(b, 0, 17, "allreduce grad bucket 3", now, 5);
  EXPECT_TRUE(contains(m, "rank 1 stopped responding (last heartbeat 31.2 s ago, at step 16, in 'forward'")) << m;
  EXPECT_TRUE(contains(m, "host node1")) << m;
}

TEST(Watchdog, FreshPeersElsewhereAndMissingFiles) {
  const double now = 1000;
  std::vector<std::optional<Heartbeat>> b{beat(0, 17, "allreduce x", now), beat(1, 16, "barrier checkpoint", now - 0.5),
                                          beat(2, 17, "allreduce x", now - 0.3), std::nullopt, std::nullopt};
  const auto m = describe_peers(b, 0, 17, "allreduce x", now, 5);
  EXPECT_TRUE(contains(m, "rank 1 is alive but in 'barrier checkpoint' at step 16")) << m;
  EXPECT_FALSE(contains(m, "rank 2")) << m;  // waits with us: not a suspect
  EXPECT_TRUE(contains(m, "ranks 3, 4 have no heartbeat file")) << m;
}

TEST(Watchdog, EveryoneWaitingBlamesTheTransport) {
  std::vector<std::optional<Heartbeat>> b{beat(0, 3, "allreduce x", 10), beat(1, 3, "allreduce x", 9.5)};
  EXPECT_TRUE(contains(describe_peers(b, 0, 3, "allreduce x", 10, 5), "every rank is alive")) ;
}

TEST(Watchdog, StaleThresholdSitsBetweenIntervalAndTimeout) {
  EXPECT_DOUBLE_EQ(stale_after_s(300, 1), 10);
  EXPECT_DOUBLE_EQ(stale_after_s(3, 1), 2.5);
  EXPECT_LT(stale_after_s(3, 1), 3);
}

TEST(Watchdog, LivenessWritesAndUpdatesItsHeartbeatFile) {
  char templ[] = "/tmp/mcm-live-XXXXXX";
  ASSERT_NE(::mkdtemp(templ), nullptr);
  const std::filesystem::path dir = templ;
  {
    Liveness live(3, 4, "hostA", dir, 0.05);
    auto hb = read_heartbeat(dir, 3);
    ASSERT_TRUE(hb.has_value());  // the first beat is written by the constructor
    EXPECT_EQ(hb->rank, 3);
    EXPECT_EQ(hb->host, "hostA");
    EXPECT_EQ(hb->pid, ::getpid());
    EXPECT_NEAR(hb->time, unix_now(), 5);
    live.set_step(42);
    live.set_phase("forward");
    {
      Liveness::OpScope in(live, "allreduce grad bucket 0");
      EXPECT_EQ(live.op(), "allreduce grad bucket 0");
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      hb = read_heartbeat(dir, 3);
      ASSERT_TRUE(hb.has_value());
      EXPECT_EQ(hb->step, 42);
      EXPECT_EQ(hb->op, "allreduce grad bucket 0");
    }
    EXPECT_EQ(live.op(), "forward");
    const auto m = live.diagnose(10);
    EXPECT_TRUE(contains(m, "ranks 0, 1, 2 have no heartbeat file")) << m;
  }
  auto hb = read_heartbeat(dir, 3);
  ASSERT_TRUE(hb.has_value());
  EXPECT_EQ(hb->op, "exited");
  EXPECT_FALSE(read_heartbeat(dir, 9).has_value());
  mcm::fs::remove_tree(dir);
}

TEST(Watchdog, WithoutFolderThePeersAreUnknown) {
  Liveness live(1, 3, "h", "", 1);
  EXPECT_FALSE(live.has_heartbeats());
  const auto m = live.diagnose(10);
  EXPECT_TRUE(contains(m, "state of ranks 0, 2 is unknown")) << m;
}
