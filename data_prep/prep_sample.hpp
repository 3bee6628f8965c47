// Per-sample checks of prep, before decoding: a safe key, media present, caption found and valid
// UTF-8. Every skipped sample becomes one JSON line (shard, key, reason, detail) in the skip log
// of its output shard; the human log keeps only the first few lines per reason and rank.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/webdataset.hpp"

namespace mcm::stages {

/// The skipped samples of one shard, in sample order: counts by reason for the manifest and
/// JSON lines for `<output>.skipped.jsonl`. Logging is rate-limited by a per-rank LogBudget.
class SkipLog {
 public:
  /// Rank-wide budget of warnings per reason (shared by the shards a rank processes).
  struct LogBudget {
    int per_reason = 5;
    std::map<std::string, int> used;
  };
  SkipLog(std::string shard, int rank, LogBudget& budget) : shard_(std::move(shard)), rank_(rank), budget_(budget) {}

  void add(const std::string& key, const std::string& reason, const std::string& detail);
  nlohmann::json counts() const;
  int64_t total() const;
  /// The JSON lines, one per skipped sample, each ending in '\n'.
  const std::string& lines() const { return lines_; }

 private:
  std::string shard_;
  int rank_;
  LogBudget& budget_;
  std::map<std::string, int64_t> n_;
  std::string lines_;
};

/// Why prep skipped a sample before decoding.
struct SkipReason {
  std::string reason, detail;
};

struct SampleItem {
  std::string key;
  std::vector<uint8_t> media;  ///< moved out of the sample
  std::string media_ext;
  std::string caption;
};

/// Caption rule of MCM's loader: json["caption"] wins, else the .txt member. Moves the media
/// bytes out of `s`. Returns the item, or the reason the sample must be skipped.
std::variant<SampleItem, SkipReason> prepare_sample(io::Sample& s, bool video, const std::string& where);

/// True when bytes are valid UTF-8 (no overlongs, no surrogates).
bool valid_utf8(const std::string& s);

}  // namespace mcm::stages
