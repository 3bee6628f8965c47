// A job with a dead or stalled rank (driven by test_peer_death.py): ranks loop all-reduces with
// heartbeats; rank 1 stops itself at iteration 5 (SIGSTOP: stalled, invisible to the launcher;
// SIGKILL: dead). Rank 0 must fail naming rank 1, and the stage-style catch ends the job.
// usage: peer_death stop|kill HEARTBEAT_DIR TIMEOUT_S
#include <signal.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "core/error.hpp"
#include "dist/communicator.hpp"
#include "dist/watchdog.hpp"

int main(int argc, char** argv) {
  if (argc != 4 || (std::strcmp(argv[1], "stop") && std::strcmp(argv[1], "kill"))) {
    std::fprintf(stderr, "usage: peer_death stop|kill HEARTBEAT_DIR TIMEOUT_S\n");
    return 2;
  }
  mcm::dist::DistContext ctx(&argc, &argv);
  try {
    mcm::dist::CommOptions o;
    o.heartbeat_dir = argv[2];
    o.timeout_s = std::atof(argv[3]);
    o.heartbeat_interval_s = 0.25;
    auto comm = mcm::dist::make_communicator(ctx, torch::kCPU, o);
    for (int i = 0; i < 200; ++i) {
      comm->set_step(i);
      comm->set_phase("forward");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (ctx.rank() == 1 && i == 5) {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));  // a heartbeat of step 5 goes out
        std::printf("peer_death: rank 1 stops at %.3f\n", mcm::dist::unix_now());
        std::fflush(stdout);
        raise(std::strcmp(argv[1], "stop") == 0 ? SIGSTOP : SIGKILL);
      }
      auto t = torch::ones({1024});
      comm->allreduce(t, mcm::dist::ReduceOp::kSum, "loop");
    }
    std::printf("peer_death rank %d: finished without noticing\n", ctx.rank());
    return 0;
  } catch (const std::exception& e) {
    // What a stage's main does (apps/main.cpp): log, then take every rank down.
    std::fprintf(stderr, "peer_death rank %d: %s\n", ctx.rank(), e.what());
    std::fflush(stderr);
    ctx.abort(3);
  }
}
