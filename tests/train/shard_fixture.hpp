// Small synthetic latent shards for the loader tests and bench: every value of a row encodes the
// row's tag, so a batch tells which rows it holds.
#pragma once
#include <c10/util/Half.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "io/hdf5_store.hpp"

namespace mcm::test {

/// Latent element j of the row tagged t: exact in float16 for t < 512.
inline float latent_value(int64_t tag, int64_t j) { return static_cast<float>(tag) + 0.25f * static_cast<float>(j % 4); }
inline float text_value(int64_t tag) { return -static_cast<float>(tag); }
inline std::string caption_of(int64_t tag) { return cat("caption ", tag); }

/// Writes `rows` rows tagged first_tag, first_tag + 1, ...; every `clips` consecutive rows share a
/// key ("<stem>-<n>"), as prep writes clips_per_video windows of one video.
inline std::filesystem::path write_shard(const std::filesystem::path& p, const std::vector<hsize_t>& latent,
                                         hsize_t L, hsize_t D, int64_t rows, int64_t first_tag, int64_t clips = 1) {
  size_t ln = 1;
  for (auto d : latent) ln *= d;
  io::LatentShardWriter w(p, io::LatentShardSpec{latent, L, D, 0});
  std::vector<uint16_t> lat(ln), txt(L * D);
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t tag = first_tag + i;
    for (size_t j = 0; j < ln; ++j) lat[j] = c10::Half(latent_value(tag, static_cast<int64_t>(j))).x;
    for (auto& t : txt) t = c10::Half(text_value(tag)).x;
    w.append(lat.data(), txt.data(), caption_of(tag), cat(p.stem().string(), "-", i / clips));
  }
  w.set_attr("clips_per_video", clips);
  w.finish();
  return p;
}

/// Shards "<prefix>-00000.h5", ... of the given sizes with consecutive tags from 0, so tag = row
/// in the loader's global order. Returned in reverse order (the loader sorts).
inline std::vector<std::filesystem::path> write_shards(const std::filesystem::path& dir, const std::string& prefix,
                                                       const std::vector<int64_t>& sizes,
                                                       const std::vector<hsize_t>& latent = {4, 2, 3, 3},
                                                       hsize_t L = 3, hsize_t D = 4, int64_t clips = 1) {
  std::vector<std::filesystem::path> out;
  int64_t tag = 0;
  for (size_t s = 0; s < sizes.size(); ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "%s-%05zu.h5", prefix.c_str(), s);
    out.insert(out.begin(), write_shard(dir / name, latent, L, D, sizes[s], tag, clips));
    tag += sizes[s];
  }
  return out;
}

}  // namespace mcm::test
