// NCCL handle ownership and error checking (STYLE.md 5, 6). Only in builds with MCM_WITH_NCCL;
// include it where <nccl.h> is on the include path (mcm_dist and its NCCL tests).
#pragma once
#include <nccl.h>

#include <string>

namespace mcm::dist {

/// Throws DistError("<call> (rank r, NCCL x.y.z): <error string>; <last error>") unless ok.
/// `comm` (may be null) adds NCCL's own description of the last error.
void nccl_check(ncclResult_t r, const char* call, ncclComm_t comm = nullptr);
#define MCM_NCCL_CHECK(call) ::mcm::dist::nccl_check((call), #call)

/// Move-only owner of an ncclComm_t; the moved-from object is empty. Destruction finalises and
/// destroys the communicator (waiting for its queued work); abort() tears it down at once, for a
/// hung or failed one. Neither throws.
class NcclComm {
 public:
  NcclComm() = default;
  /// ncclCommInitRank on the current CUDA device; throws DistError.
  static NcclComm init(int world, const ncclUniqueId& id, int rank);
  ~NcclComm();
  NcclComm(NcclComm&& o) noexcept : c_(o.c_) { o.c_ = nullptr; }
  NcclComm& operator=(NcclComm&& o) noexcept;
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  ncclComm_t get() const { return c_; }
  explicit operator bool() const { return c_ != nullptr; }
  /// ncclCommAbort: stops its kernels and frees it; the object becomes empty.
  void abort() noexcept;
  /// ncclCommGetAsyncError (ncclSuccess for an empty object).
  ncclResult_t async_error() const noexcept;

 private:
  void destroy() noexcept;
  ncclComm_t c_ = nullptr;
};

}  // namespace mcm::dist
