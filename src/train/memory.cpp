#include "train/memory.hpp"

#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "core/error.hpp"

#if MCM_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace mcm::train {

CudaPeak cuda_peak_memory(torch::Device device) {
#if MCM_WITH_CUDA
  if (!device.is_cuda()) return {};
  const auto st = c10::cuda::CUDACachingAllocator::getDeviceStats(device.has_index() ? device.index() : 0);
  const auto agg = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  return {static_cast<double>(st.allocated_bytes[agg].peak) / kGiB, static_cast<double>(st.reserved_bytes[agg].peak) / kGiB};
#else
  (void)device;
  return {};
#endif
}

void reset_cuda_peak_memory(torch::Device device) {
#if MCM_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.has_index() ? device.index() : 0);
#else
  (void)device;
#endif
}

AutocastGuard::AutocastGuard(torch::Device device, const std::string& precision) {
  if (precision == "fp32") return;
  type_ = device.type();
  prev_enabled_ = at::autocast::is_autocast_enabled(type_);
  prev_dtype_ = at::autocast::get_autocast_dtype(type_);
  at::autocast::set_autocast_enabled(type_, true);
  at::autocast::set_autocast_dtype(type_, precision == "bf16" ? torch::kBFloat16 : torch::kHalf);
  at::autocast::increment_nesting();
  active_ = true;
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(type_, prev_enabled_);
  at::autocast::set_autocast_dtype(type_, prev_dtype_);
}

namespace {

// The ops of CUDA autocast's float32 lists (torch's autocast_mode.h, AT_FORALL_FP32 and
// AT_FORALL_FP32_SET_OPT_DTYPE) that our models call; CPU autocast runs most of them in the input's
// dtype. Under CUDA autocast a bf16 input is cast to float32 and the output is float32, so the
// tensors a backward keeps (a GroupNorm's input, the SiLU after it) are float32 there.
constexpr const char* kCudaFp32Ops[] = {
    "group_norm", "layer_norm", "native_layer_norm", "softmax.int", "log_softmax.int", "exp", "log",
    "pow.Tensor_Scalar", "pow.Tensor_Tensor", "rsqrt", "reciprocal", "sum", "sum.dim_IntList", "cumsum",
    "logsumexp", "mse_loss", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact2d",
    "_upsample_nearest_exact3d", "upsample_bilinear2d", "upsample_trilinear3d"};

// Casts the lower-precision floating tensor arguments to float32 and runs the op below autocast.
void run_in_float32(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const size_t n = op.schema().arguments().size();
  for (size_t i = stack->size() - n; i < stack->size(); ++i) {
    auto& v = (*stack)[i];
    if (!v.isTensor()) continue;
    const auto& t = v.toTensor();
    if (t.defined() && (t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kHalf)) v = t.to(at::kFloat);
  }
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
  op.callBoxed(stack);
}

// Wraps the allocator that was in place, keeping its blocks "simple" (data == context, one raw
// deleter), which some kernels require of the CPU allocator (Allocator::raw_allocate). The size and
// the inner deleter of each live block sit in a map, so a tensor freed after the measurement (or
// by another thread) still balances the count. The object lives for the whole process, because
// storage it handed out may outlive any scope.
class CountingAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    auto inner = base_.load()->allocate(n);
    void* data = inner.get();
    const auto device = inner.device();
    if (data == nullptr) return inner;  // zero bytes
    require<Error>(base_.load()->is_simple_data_ptr(inner) && inner.get_deleter() != nullptr,
                   "peak_cpu_tensor_bytes: the CPU allocator in place hands out non-simple blocks");
    const auto deleter = inner.get_deleter();
    inner.release_context();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      blocks_[data] = {n, deleter};
      live_ += static_cast<int64_t>(n);
      peak_ = std::max(peak_, live_);
    }
    return {data, data, &CountingAllocator::release, device};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &CountingAllocator::release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }

  void start(c10::Allocator* base) {
    base_ = base;
    std::lock_guard<std::mutex> lock(mutex_);
    live_ = 0;
    peak_ = 0;
  }
  int64_t peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    return peak_;
  }

 private:
  struct Block {
    size_t bytes;
    c10::DeleterFnPtr deleter;
  };
  static void release(void* data);

  std::atomic<c10::Allocator*> base_{nullptr};
  std::mutex mutex_;
  std::unordered_map<void*, Block> blocks_;
  int64_t live_ = 0, peak_ = 0;
};

CountingAllocator& counting_allocator() {
  static auto* a = new CountingAllocator;  // never destroyed: see the class comment
  return *a;
}

std::atomic<bool> metering{false};

void CountingAllocator::release(void* data) {
  auto& self = counting_allocator();
  Block block{};
  {
    std::lock_guard<std::mutex> lock(self.mutex_);
    auto it = self.blocks_.find(data);
    if (it == self.blocks_.end()) return;  // cannot happen: only blocks from allocate() carry this deleter
    block = it->second;
    self.live_ -= static_cast<int64_t>(block.bytes);
    self.blocks_.erase(it);
  }
  block.deleter(data);
}

}  // namespace

struct CudaAutocastPolicyOnCpu::Registrations {
  torch::Library library{torch::Library::IMPL, "aten", c10::DispatchKey::AutocastCPU, __FILE__, __LINE__};
};

CudaAutocastPolicyOnCpu::CudaAutocastPolicyOnCpu() : reg_(std::make_unique<Registrations>()) {
  for (const char* name : kCudaFp32Ops) {
    const std::string full = name;
    const auto dot = full.find('.');
    const auto op = c10::Dispatcher::singleton().findOp(
        {"aten::" + full.substr(0, dot), dot == std::string::npos ? "" : full.substr(dot + 1)});
    // Ops CPU autocast already routes (its own float32 list) keep their kernel.
    if (!op || op->hasKernelForDispatchKey(c10::DispatchKey::AutocastCPU)) continue;
    reg_->library.impl(name, torch::CppFunction::makeFromBoxedFunction<&run_in_float32>());
  }
}

CudaAutocastPolicyOnCpu::~CudaAutocastPolicyOnCpu() = default;  // the Library's destruction unregisters

int64_t peak_cpu_tensor_bytes(const std::function<void()>& fn) {
  require<Error>(!metering.exchange(true), "peak_cpu_tensor_bytes: a measurement is already running in this process");
  // Priority above the default's, restored with the same priority: a later SetCPUAllocator of
  // lower priority (none in this program) would otherwise be ignored until then.
  constexpr uint8_t kPriority = 100;
  auto& counter = counting_allocator();
  c10::Allocator* previous = c10::GetCPUAllocator();
  counter.start(previous);
  c10::SetCPUAllocator(&counter, kPriority);
  struct Restore {
    c10::Allocator* previous;
    ~Restore() {
      c10::SetCPUAllocator(previous, kPriority);
      metering = false;
    }
  } restore{previous};
  fn();
  return counter.peak();
}

PassFit PassFit::measure(const std::function<double(int64_t, int64_t)>& pass, int64_t d) {
  require<Error>(d > 0, "PassFit: the side must be positive, got ", d);
  const double one_small = pass(1, d), one_large = pass(1, 2 * d), two_small = pass(2, d);
  PassFit f;
  f.per_area = (one_large - one_small) / static_cast<double>(3 * d * d);  // (2d)^2 - d^2
  f.once = 2 * one_small - two_small;                                    // bytes(2, d) - bytes(1, d) = one item
  f.per_item = one_small - f.once - f.per_area * static_cast<double>(d * d);
  return f;
}

}  // namespace mcm::train
