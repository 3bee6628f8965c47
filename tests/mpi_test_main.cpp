// Own main for the MPI gtest binaries (tests/dist, tests/train): see mpi_test_main.hpp.
#include "mpi_test_main.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>


namespace mcm::test {
namespace {
dist::DistContext* g_ctx = nullptr;

/// On ranks other than 0: only failures, tagged with the rank (rank 0 prints the full report).
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestStart(const ::testing::TestInfo& t) override {
    name_ = std::string(t.test_suite_name()) + "." + t.name();
  }
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s failed at %s:%d\n%s\n", rank_, name_.c_str(), r.file_name() ? r.file_name() : "?",
                 r.line_number(), r.summary());
  }

 private:
  int rank_;
  std::string name_;
};
}

dist::DistContext& dist_ctx() { return *g_ctx; }

std::filesystem::path shared_temp_dir(const std::string& tag) {
  std::string dir;
  if (g_ctx->is_root()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/mcm-" + tag + "-XXXXXX";
    if (!::mkdtemp(templ.data())) std::abort();
    dir = templ;
  }
  return g_ctx->broadcast(dir);
}
}  // namespace mcm::test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  int rc;
  {
    mcm::dist::DistContext ctx(&argc, &argv);
    mcm::test::g_ctx = &ctx;
    if (!ctx.is_root()) {
      auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
      listeners.Append(new mcm::test::RankFailurePrinter(ctx.rank()));
    }
    rc = RUN_ALL_TESTS();
    std::vector<int64_t> v{rc != 0};
    ctx.allreduce_sum(v);
    rc = v[0] != 0;
  }
  return rc;
}
