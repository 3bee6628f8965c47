// CUDA and NCCL queries, compiled to real calls when the build has them (MCM_WITH_CUDA/NCCL).
#include "core/build_info.hpp"
#include "core/error.hpp"
#include "dist/dist_context.hpp"

#if MCM_WITH_CUDA
#include <cuda_runtime_api.h>
#endif
#if MCM_WITH_NCCL
#include <nccl.h>
#endif

namespace mcm::dist {

int cuda_device_count() {
#if MCM_WITH_CUDA
  int n = 0;
  // No driver (CPU machines) is not an error: it means zero devices.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
#else
  return 0;
#endif
}

std::string cuda_version() {
#if MCM_WITH_CUDA
  int rt = 0, drv = 0;
  cudaRuntimeGetVersion(&rt);
  cudaDriverGetVersion(&drv);
  return cat("CUDA runtime ", rt / 1000, ".", (rt % 1000) / 10, ", driver ",
             drv ? cat(drv / 1000, ".", (drv % 1000) / 10) : std::string("none"));
#else
  return "not built";
#endif
}

std::string nccl_version() {
#if MCM_WITH_NCCL
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown";
  return cat("NCCL ", v / 10000, ".", (v % 10000) / 100, ".", v % 100);
#else
  return "not built";
#endif
}

}  // namespace mcm::dist
