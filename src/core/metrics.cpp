// JSON-lines metrics writer.
#include "core/metrics.hpp"

#include <chrono>
#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace mcm {

MetricsWriter::MetricsWriter(const std::filesystem::path& path) {
  f_ = std::fopen(path.c_str(), "a");
  if (!f_) throw IoError(cat("open metrics file ", path, ": ", errno_text(errno)));
}

MetricsWriter::~MetricsWriter() {
  if (f_) std::fclose(f_);
}

MetricsWriter& MetricsWriter::operator=(MetricsWriter&& o) noexcept {
  if (this != &o) {
    if (f_) std::fclose(f_);
    f_ = o.f_;
    o.f_ = nullptr;
  }
  return *this;
}

void MetricsWriter::write(const nlohmann::json& record) {
  if (!f_) return;
  nlohmann::json r = record;
  r["time"] = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::string line = r.dump() + "\n";
  std::fwrite(line.data(), 1, line.size(), f_);
  std::fflush(f_);
}

}  // namespace mcm
