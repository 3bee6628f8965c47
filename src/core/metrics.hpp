// Metrics for machines: one JSON object per line, appended and flushed (never parse the log).
#pragma once
#include <cstdio>
#include <filesystem>

#include <nlohmann/json_fwd.hpp>

namespace mcm {

/// Appends JSON lines to a file; each record gets "time" (unix seconds). Move-only.
class MetricsWriter {
 public:
  MetricsWriter() = default;
  explicit MetricsWriter(const std::filesystem::path& path);
  ~MetricsWriter();
  MetricsWriter(MetricsWriter&& o) noexcept : f_(o.f_) { o.f_ = nullptr; }
  MetricsWriter& operator=(MetricsWriter&& o) noexcept;
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  void write(const nlohmann::json& record);
  bool is_open() const { return f_ != nullptr; }

 private:
  std::FILE* f_ = nullptr;
};

}  // namespace mcm
