// Noise from keys: filled in parallel by element ranges, which cannot change a value (each element
// depends only on its key and index), then cast and moved.
#include "diffusion/noise.hpp"

#include "core/error.hpp"

namespace mcm::diffusion {
namespace {
constexpr int64_t kGrain = 1 << 14;  // elements per task: Box-Muller costs ~20 ns per element

template <class T>
void fill(const rng::Key& key, T* data, int64_t n) {
  // Even chunk starts keep each Box-Muller pair inside one task (not required, just less work).
  at::parallel_for(0, (n + 1) / 2, kGrain / 2, [&](int64_t b, int64_t e) {
    const int64_t lo = 2 * b, hi = std::min(n, 2 * e);
    rng::fill_normal(key, static_cast<uint64_t>(lo), data + lo, static_cast<size_t>(hi - lo));
  });
}

// Fills a contiguous CPU tensor of float32 or float64 from the key.
void fill_from(const rng::Key& key, torch::Tensor& cpu) {
  if (cpu.scalar_type() == torch::kFloat64) fill(key, cpu.data_ptr<double>(), cpu.numel());
  else fill(key, cpu.data_ptr<float>(), cpu.numel());
}

torch::ScalarType draw_dtype(const torch::TensorOptions& options) {
  const auto dt = c10::typeMetaToScalarType(options.dtype());
  require<DataError>(at::isFloatingType(dt), "randn with dtype ", dt, ": expected a floating dtype");
  return dt == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

torch::Tensor finish(torch::Tensor cpu, const torch::TensorOptions& options) {
  return cpu.to(options.device(), c10::typeMetaToScalarType(options.dtype()));
}
}  // namespace

torch::Tensor randn(const rng::Key& key, at::IntArrayRef shape, const torch::TensorOptions& options) {
  auto cpu = torch::empty(shape, torch::TensorOptions().dtype(draw_dtype(options)));
  fill_from(key, cpu);
  return finish(std::move(cpu), options);
}

torch::Tensor randn_per_sample(const std::vector<rng::Key>& keys, at::IntArrayRef sample_shape,
                               const torch::TensorOptions& options) {
  std::vector<int64_t> shape{static_cast<int64_t>(keys.size())};
  shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
  auto cpu = torch::empty(shape, torch::TensorOptions().dtype(draw_dtype(options)));
  for (size_t b = 0; b < keys.size(); ++b) {
    auto row = cpu[static_cast<int64_t>(b)];
    fill_from(keys[b], row);
  }
  return finish(std::move(cpu), options);
}

}  // namespace mcm::diffusion
