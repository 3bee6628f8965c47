// DistContext: the one MPI context of a process (STYLE.md 10). Works as a singleton (no
// launcher), under mpirun and under srun; owns the world and node-local communicators.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mcm::dist {

/// Throws DistError("<call> (rank r): <MPI error string>") when rc != MPI_SUCCESS.
void mpi_check(int rc, const char* call);
#define MCM_MPI_CHECK(call) ::mcm::dist::mpi_check((call), #call)

/// Move-only owner of an MPI communicator (never MPI_COMM_WORLD); freed on destruction.
class Comm {
 public:
  Comm() = default;
  explicit Comm(MPI_Comm c) : c_(c) {}
  ~Comm();
  Comm(Comm&& o) noexcept : c_(o.c_) { o.c_ = MPI_COMM_NULL; }
  Comm& operator=(Comm&& o) noexcept;
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;
  MPI_Comm get() const { return c_; }

 private:
  MPI_Comm c_ = MPI_COMM_NULL;
};

class DistContext {
 public:
  /// Initialises MPI (thread level FUNNELED) unless already initialised; finalises if it did.
  DistContext(int* argc, char*** argv);
  ~DistContext();
  DistContext(const DistContext&) = delete;
  DistContext& operator=(const DistContext&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  bool is_root() const { return rank_ == 0; }
  const std::string& hostname() const { return host_; }
  MPI_Comm world() const { return MPI_COMM_WORLD; }
  MPI_Comm local() const { return local_.get(); }
  /// CUDA device of this rank (local_rank modulo the visible devices), or -1 on CPU.
  int device() const { return device_; }

  void barrier() const;
  /// Sum (in place) over ranks.
  void allreduce_sum(std::vector<int64_t>& v) const;
  /// Logical OR of a flag over ranks (e.g. "some rank failed").
  bool any(bool flag) const;
  /// Root's string, on every rank.
  std::string broadcast(const std::string& s, int root = 0) const;
  /// Every rank's string, in rank order, on every rank.
  std::vector<std::string> allgather(const std::string& s) const;
  /// Kills every rank (after the caller logged why): MPI_Abort on the world.
  [[noreturn]] void abort(int code) const;

 private:
  bool owns_mpi_ = false;
  int rank_ = 0, world_ = 1, local_rank_ = 0, local_size_ = 1, device_ = -1;
  std::string host_;
  Comm local_;
};

/// MPI library version (first line of MPI_Get_library_version).
std::string mpi_version();
/// Visible CUDA devices (0 without CUDA support or driver), and the CUDA/NCCL versions.
int cuda_device_count();
std::string cuda_version();
std::string nccl_version();

}  // namespace mcm::dist
