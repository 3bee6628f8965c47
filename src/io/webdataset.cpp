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
