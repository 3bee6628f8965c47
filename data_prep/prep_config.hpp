// [prep]: how tar shards become latent shards, owned by the prep stage (Note [sections] in
// core/config.hpp). Registered in prep.cpp.
#pragma once
#include <cstdint>
#include <string>

#include "core/config.hpp"

namespace mcm::stages {

struct PrepSection {
  static constexpr const char* kName = "prep";
  std::string videos = "";        ///< video shards: a folder of *.tar or one .tar ("" = <run.dir>/data/videos)
  std::string images = "";        ///< image shards, likewise ("" = <run.dir>/data/images if present)
  bool encode_images = true;      ///< also turn the image shards into image latent shards
  int64_t frames = 8;             ///< frames per clip (T)
  int64_t stride = 2;             ///< frame stride inside a clip
  int64_t resolution = 32;        ///< side of the square clip after crop and resize
  std::string crop = "center";    ///< "center" or "random_resized" (one crop per clip, seeded by key)
  double crop_scale_min = 0.75;   ///< random_resized: smallest area fraction of videos
  double image_crop_scale_min = 0.5;  ///< random_resized: smallest area fraction of images
  int64_t encode_batch = 32;      ///< frames per autoencoder call (bounds memory)
  int64_t batch_clips = 8;        ///< clips (or images) encoded together; captions likewise
  int64_t clips_per_video = 1;    ///< K windows (each with its own start and crop) stored per video
  int64_t min_frames = 0;         ///< shortest usable video; 0 = frames x stride (MCM's loader rule)
  int64_t decode_workers = 0;     ///< decoding threads per rank feeding the encoders; 0 = run.threads
  std::string dtype = "auto";     ///< encoder precision: auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16
  int64_t max_failed_shards = 0;  ///< unreadable shards tolerated before the stage fails (named in the manifest)

  void visit(config::FieldVisitor& v);
  void validate(const config::Config& cfg) const;
};

}  // namespace mcm::stages
