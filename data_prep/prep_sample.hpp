// Per-sample checks of prep, before decoding: media present, caption found and valid UTF-8.
// Failures are counted by reason (the manifest's "skipped") and logged with file, key and rank.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/webdataset.hpp"

namespace mcm::stages {

/// Skip reasons and counts; the first few of each reason are logged as warnings.
class SkipCounter {
 public:
  void add(const std::string& reason, const std::string& detail, int rank);
  nlohmann::json counts() const;
  int64_t total() const;

 private:
  std::map<std::string, int64_t> n_;
};

struct SampleItem {
  const std::vector<uint8_t>* media = nullptr;
  std::string media_ext;
  std::string caption;
};

/// Caption rule of MCM's loader: json["caption"] wins, else the .txt member.
/// Returns nullopt (and counts the reason) when the sample must be skipped.
std::optional<SampleItem> prepare_sample(const io::Sample& s, bool video, const std::string& where, SkipCounter& skips, int rank);

/// True when bytes are valid UTF-8 (no overlongs, no surrogates).
bool valid_utf8(const std::string& s);

}  // namespace mcm::stages
