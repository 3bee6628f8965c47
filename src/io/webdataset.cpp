// WebDataset grouping over the streaming tar reader.
#include "io/webdataset.hpp"

#include "core/error.hpp"

namespace mcm::io {

std::optional<std::pair<std::string, std::string>> split_key(const std::string& member) {
  size_t slash = member.rfind('/');
  size_t base = slash == std::string::npos ? 0 : slash + 1;
  size_t dot = member.find('.', base);
  if (dot == std::string::npos || dot == base || dot + 1 == member.size()) return std::nullopt;
  return std::make_pair(member.substr(0, dot), member.substr(dot + 1));
}

namespace {
constexpr size_t kNameMax = 255;   // NAME_MAX on Linux filesystems
constexpr size_t kPathMax = 4096;  // PATH_MAX, including the terminating NUL

std::optional<std::string> unsafe_component(const std::string& key, size_t begin, size_t end) {
  const size_t len = end - begin;
  if (len == 0) return cat("empty path component at byte ", begin);
  if (len == 2 && key.compare(begin, 2, "..") == 0) return cat("\"..\" component at byte ", begin);
  if (len > kNameMax) return cat("path component at byte ", begin, " has ", len, " bytes (NAME_MAX ", kNameMax, ")");
  return std::nullopt;
}
}  // namespace

std::optional<std::string> unsafe_key_reason(const std::string& key) {
  if (key.empty()) return "empty key";
  // Control bytes first: the other reasons are then safe to print with the key.
  for (size_t i = 0; i < key.size(); ++i) {
    const auto c = static_cast<unsigned char>(key[i]);
    if (c < 0x20 || c == 0x7f) return cat("control byte ", static_cast<int>(c), " at byte ", i);
  }
  if (key.front() == '/') return "absolute path";
  if (key.size() >= kPathMax) return cat("key has ", key.size(), " bytes (PATH_MAX ", kPathMax, ")");
  for (size_t begin = 0;;) {
    const size_t slash = key.find('/', begin);
    const size_t end = slash == std::string::npos ? key.size() : slash;
    if (auto why = unsafe_component(key, begin, end)) return why;
    if (slash == std::string::npos) return std::nullopt;
    begin = slash + 1;
  }
}

WebDatasetReader::WebDatasetReader(const std::filesystem::path& tar) : reader_(tar) {}

bool WebDatasetReader::fill() {
  if (pending_ || error_) return pending_.has_value();
  TarMember m;
  try {
    if (!reader_.next(m)) return false;
  } catch (const DataError& e) {
    // A file that is not a tar at all is an unreadable shard: the caller must fail it.
    if (first_) throw;
    error_ = e.what();
    return false;
  }
  first_ = false;
  pending_ = std::move(m);
  return true;
}

bool WebDatasetReader::next(Sample& out) {
  out.key.clear();
  out.files.clear();
  while (fill()) {
    auto split = split_key(pending_->name);
    if (!split) { ++skipped_; pending_.reset(); continue; }
    auto& [key, ext] = *split;
    if (!out.key.empty() && (key != out.key || out.files.count(ext))) return true;
    out.key = key;
    out.files[ext] = std::move(pending_->data);
    pending_.reset();
  }
  if (error_) {
    // The sample in flight is complete only if the truncated member belongs to another key.
    auto cut = split_key(reader_.current_name());
    if (!out.key.empty() && cut && cut->first != out.key) return true;
    out.files.clear();
    out.key.clear();
    return false;
  }
  return !out.key.empty();
}

}  // namespace mcm::io
