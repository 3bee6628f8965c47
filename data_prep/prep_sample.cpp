// Sample validation for prep.
#include "data_prep/prep_sample.hpp"

#include "core/error.hpp"
#include "core/log.hpp"

namespace mcm::stages {

void SkipLog::add(const std::string& key, const std::string& reason, const std::string& detail) {
  ++n_[reason];
  lines_ += nlohmann::json{{"shard", shard_}, {"key", key}, {"reason", reason}, {"detail", detail}}.dump(
                -1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  int used = ++budget_.used[reason];
  if (used <= budget_.per_reason) log::warn("skip (", reason, ", rank ", rank_, "): ", detail);
  else if (used == budget_.per_reason + 1)
    log::warn("skip (", reason, ", rank ", rank_, "): further ones go to the shards' *.skipped.jsonl only");
}

nlohmann::json SkipLog::counts() const {
  nlohmann::json j = nlohmann::json::object();
  for (auto& [k, v] : n_) j[k] = v;
  return j;
}

int64_t SkipLog::total() const {
  int64_t t = 0;
  for (auto& [k, v] : n_) t += v;
  return t;
}

bool valid_utf8(const std::string& s) {
  size_t i = 0, n = s.size();
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > n) return false;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    for (int k = 1; k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 2) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

std::variant<SampleItem, SkipReason> prepare_sample(io::Sample& s, bool video, const std::string& where) {
  static const std::vector<std::string> video_exts{"mp4", "avi", "mov", "mkv", "webm"};
  static const std::vector<std::string> image_exts{"jpg", "jpeg", "png", "webp"};
  // Keys become file names in later stages (samples, previews): refuse what could escape a folder.
  if (auto why = io::unsafe_key_reason(s.key)) return SkipReason{"unsafe_path", cat(where, ": unsafe key: ", *why)};
  SampleItem item;
  item.key = s.key;
  for (auto& e : video ? video_exts : image_exts) {
    auto it = s.files.find(e);
    if (it != s.files.end()) { item.media = std::move(it->second); item.media_ext = e; break; }
  }
  if (item.media_ext.empty()) {
    // video2dataset writes .txt/.json for failed downloads; say which status it recorded.
    std::string status;
    if (auto it = s.files.find("json"); it != s.files.end()) {
      auto j = nlohmann::json::parse(it->second.begin(), it->second.end(), nullptr, false);
      if (j.is_object() && j.contains("status") && j["status"].is_string()) status = j["status"].get<std::string>();
    }
    return SkipReason{"no_media", cat(where, ": no ", video ? "video" : "image", " member",
                                      status.empty() ? "" : cat(" (status \"", status, "\")"))};
  }
  bool found = false;
  if (auto it = s.files.find("json"); it != s.files.end()) {
    auto j = nlohmann::json::parse(it->second.begin(), it->second.end(), nullptr, false);
    if (j.is_object() && j.contains("caption") && j["caption"].is_string()) {
      item.caption = j["caption"].get<std::string>();
      found = true;
    }
  }
  if (!found) {
    for (const char* e : {"txt", "caption"}) {
      if (auto it = s.files.find(e); it != s.files.end()) {
        item.caption.assign(it->second.begin(), it->second.end());
        found = true;
        break;
      }
    }
  }
  if (found && !valid_utf8(item.caption)) return SkipReason{"bad_caption_utf8", cat(where, ": caption is not valid UTF-8")};
  while (!item.caption.empty() && (item.caption.back() == '\n' || item.caption.back() == '\r' || item.caption.back() == ' '))
    item.caption.pop_back();
  if (!found || item.caption.empty()) return SkipReason{"missing_caption", cat(where, ": no caption in .json or .txt")};
  return item;
}

}  // namespace mcm::stages
