// Precision and memory of a pass: the autocast region the trainer runs its forward in, and a
// meter of the CPU tensor memory a piece of code holds at its peak (what `mcm distill --dry-run`
// measures activations with, Note [activation estimate] in pipeline/distill_plan.cpp).
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace mcm::train {

/// Autocast for a forward pass on `device` in `precision` ("fp32": nothing; "bf16"; "fp16"), as
/// torch.autocast does it: enable, set the dtype, nest; the outermost region clears the cast cache.
class AutocastGuard {
 public:
  AutocastGuard(torch::Device device, const std::string& precision);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false, prev_enabled_ = false;
  c10::DeviceType type_ = c10::DeviceType::CPU;
  at::ScalarType prev_dtype_ = at::kFloat;
};

/// While alive, CPU autocast keeps CUDA autocast's float32 ops in float32 (the norms, softmax,
/// upsampling, exp/pow/sums and losses of torch's AT_FORALL_FP32 lists that run in lower
/// precision under CPU autocast): a pass measured on the CPU then holds the tensors, in the
/// dtypes, that it holds on a GPU. For the activation estimate only; one at a time.
class CudaAutocastPolicyOnCpu {
 public:
  CudaAutocastPolicyOnCpu();
  ~CudaAutocastPolicyOnCpu();
  CudaAutocastPolicyOnCpu(const CudaAutocastPolicyOnCpu&) = delete;
  CudaAutocastPolicyOnCpu& operator=(const CudaAutocastPolicyOnCpu&) = delete;

 private:
  struct Registrations;
  std::unique_ptr<Registrations> reg_;
};

/// The most CPU tensor storage, in bytes, that was live at once while `fn` ran, above what was
/// live when it started. Every CPU allocation torch makes in the meantime goes through a counting
/// wrapper of the default allocator (storage only: oneDNN's scratch buffers and the malloc
/// arena's slack are not counted). One measurement at a time per process (LogicError otherwise).
int64_t peak_cpu_tensor_bytes(const std::function<void()>& fn);

/// Peak GPU memory torch's caching allocator held on `device` since the last reset, in GiB: what
/// torch.cuda.max_memory_allocated / max_memory_reserved report. Zeros off CUDA.
struct CudaPeak {
  double allocated_gib = 0, reserved_gib = 0;
};
CudaPeak cuda_peak_memory(torch::Device device);
/// Starts a new peak on `device` (torch.cuda.reset_peak_memory_stats); nothing off CUDA.
void reset_cuda_peak_memory(torch::Device device);

/// Peak bytes of a pass over n items (clips, frames) of latent side s, as
///   bytes(n, s) = once + n * (per_item + per_area * s^2),
/// fitted through three passes at (1, d), (1, 2d) and (2, d): `once` is what a pass holds whatever
/// its batch, `per_item` what each item adds at any size, `per_area` what scales with the area.
struct PassFit {
  double once = 0, per_item = 0, per_area = 0;
  /// `pass(n, s)`: the measured peak bytes of one pass; d: the smallest side the network takes.
  static PassFit measure(const std::function<double(int64_t, int64_t)>& pass, int64_t d);
  double at(int64_t n, int64_t side) const {
    return once + static_cast<double>(n) * (per_item + per_area * static_cast<double>(side * side));
  }
};

}  // namespace mcm::train
