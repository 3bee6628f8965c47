// DistContext: MPI initialisation, node-local split, collectives used by the stages.
#include "dist/dist_context.hpp"

#include <unistd.h>

#include <cstdlib>

#include "core/error.hpp"

namespace mcm::dist {

void mpi_check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  int rank = -1, init = 0;
  MPI_Initialized(&init);
  if (init) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  throw DistError(cat(call, " (rank ", rank, "): ", std::string(msg, len)));
}

Comm::~Comm() {
  int fin = 0;
  MPI_Finalized(&fin);
  if (c_ != MPI_COMM_NULL && !fin) MPI_Comm_free(&c_);
}
Comm& Comm::operator=(Comm&& o) noexcept {
  if (this != &o) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (c_ != MPI_COMM_NULL && !fin) MPI_Comm_free(&c_);
    c_ = o.c_;
    o.c_ = MPI_COMM_NULL;
  }
  return *this;
}

DistContext::DistContext(int* argc, char*** argv) {
  int init = 0;
  MCM_MPI_CHECK(MPI_Initialized(&init));
  if (!init) {
    int provided = 0;
    MCM_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    owns_mpi_ = true;
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MCM_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  MCM_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_));
  MPI_Comm local;
  MCM_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local));
  local_ = Comm(local);
  MCM_MPI_CHECK(MPI_Comm_rank(local, &local_rank_));
  MCM_MPI_CHECK(MPI_Comm_size(local, &local_size_));
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  host_ = name;
  int n = cuda_device_count();
  device_ = n > 0 ? local_rank_ % n : -1;
}

DistContext::~DistContext() {
  local_ = Comm();
  int fin = 0;
  MPI_Finalized(&fin);
  if (owns_mpi_ && !fin) MPI_Finalize();
}

void DistContext::barrier() const { MCM_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD)); }

void DistContext::allreduce_sum(std::vector<int64_t>& v) const {
  if (v.empty()) return;
  MCM_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD));
}

bool DistContext::any(bool flag) const {
  int v = flag ? 1 : 0;
  MCM_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD));
  return v != 0;
}

std::string DistContext::broadcast(const std::string& s, int root) const {
  int64_t n = static_cast<int64_t>(s.size());
  MCM_MPI_CHECK(MPI_Bcast(&n, 1, MPI_INT64_T, root, MPI_COMM_WORLD));
  std::string out = rank_ == root ? s : std::string(static_cast<size_t>(n), '\0');
  if (n) MCM_MPI_CHECK(MPI_Bcast(out.data(), static_cast<int>(n), MPI_CHAR, root, MPI_COMM_WORLD));
  return out;
}

std::vector<std::string> DistContext::allgather(const std::string& s) const {
  int n = static_cast<int>(s.size());
  std::vector<int> sizes(world_), displs(world_);
  MCM_MPI_CHECK(MPI_Allgather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, MPI_COMM_WORLD));
  int total = 0;
  for (int i = 0; i < world_; ++i) { displs[i] = total; total += sizes[i]; }
  std::string all(static_cast<size_t>(total), '\0');
  MCM_MPI_CHECK(MPI_Allgatherv(s.data(), n, MPI_CHAR, all.data(), sizes.data(), displs.data(), MPI_CHAR, MPI_COMM_WORLD));
  std::vector<std::string> out;
  for (int i = 0; i < world_; ++i) out.push_back(all.substr(displs[i], sizes[i]));
  return out;
}

void DistContext::abort(int code) const {
  if (world_ > 1) MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

std::string mpi_version() {
  char buf[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int len = 0;
  MPI_Get_library_version(buf, &len);
  std::string s(buf, len);
  auto nl = s.find_first_of("\n,");
  return nl == std::string::npos ? s : s.substr(0, nl);
}

}  // namespace mcm::dist
