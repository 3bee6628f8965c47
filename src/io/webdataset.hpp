// WebDataset samples from a tar: consecutive members sharing a key, as webdataset's
// base_plus_ext rule splits them (key = path up to the first dot of the basename).
#pragma once
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "io/tar.hpp"

namespace mcm::io {

struct Sample {
  std::string key;                                   ///< __key__
  std::map<std::string, std::vector<uint8_t>> files;  ///< extension ("mp4", "json", ...) -> bytes
  bool has(const std::string& ext) const { return files.count(ext) != 0; }
};

/// Splits "dir/000123.seg.png" into {"dir/000123", "seg.png"}; nullopt when there is no dot.
std::optional<std::pair<std::string, std::string>> split_key(const std::string& member);

/// Why `key` must not become a file name in later stages, or nullopt when it is safe: empty,
/// absolute, a ".." component, an empty component ("a//b", trailing '/'), a control byte (NUL,
/// < 0x20, 0x7f), a component longer than NAME_MAX (255) bytes, or the whole key reaching
/// PATH_MAX (4096). Keys come from member names, i.e. from whoever wrote the shard.
std::optional<std::string> unsafe_key_reason(const std::string& key);

/// Streams samples. A new sample starts when the key changes or an extension repeats. A
/// truncated or corrupt archive ends the stream: next() returns false and error() says why;
/// the sample the truncation cut is dropped (and counted by the caller via error()).
class WebDatasetReader {
 public:
  explicit WebDatasetReader(const std::filesystem::path& tar);
  bool next(Sample& out);
  /// Set when the archive ended in a truncation or corruption (after the last good sample).
  const std::optional<std::string>& error() const { return error_; }
  /// Members skipped because their basename has no extension.
  int skipped_members() const { return skipped_; }

 private:
  bool fill();
  TarReader reader_;
  std::optional<TarMember> pending_;
  std::optional<std::string> error_;
  bool first_ = true;
  int skipped_ = 0;
};

}  // namespace mcm::io
