// `mcm prep`: tar shards -> HDF5 latent shards. Shard i goes to rank i % world; each output is
// named after its input's position, so any world size writes the same files. Sample faults are
// skipped and counted by reason; a shard that cannot be read fails the stage (after the other
// shards finish) so it is fixed and redone, never silently dropped.
#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "core/checksum.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/progress.hpp"
#include "data_prep/prep_sample.hpp"
#include "data_prep/stages.hpp"
#include "io/hdf5_store.hpp"
#include "io/media_decode.hpp"
#include "io/webdataset.hpp"
#include "models/encoders.hpp"
#include "pipeline/stage_run.hpp"

namespace mcm::stages {
namespace {
using json = nlohmann::json;
namespace stdfs = std::filesystem;

// A folder of *.tar (sorted), or a single .tar file.
std::vector<stdfs::path> list_shards(const stdfs::path& where, bool required) {
  std::vector<stdfs::path> out;
  if (!stdfs::exists(where)) {
    require<IoError>(!required, "prep: input ", where, " does not exist (run `mcm synth` or set prep.videos)");
    return out;
  }
  if (stdfs::is_regular_file(where)) return {where};
  for (auto& e : stdfs::directory_iterator(where))
    if (e.is_regular_file() && e.path().extension() == ".tar") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  require<IoError>(!required || !out.empty(), "prep: no *.tar shards in ", where);
  return out;
}

struct Encoders {
  std::unique_ptr<models::FrameAutoencoder> ae;
  std::unique_ptr<models::TextEncoder> text;
};

// IEEE half bit patterns of a tensor, in row-major order (what the HDF5 writer stores).
std::vector<uint16_t> half_bits(const torch::Tensor& t) {
  auto h = t.contiguous().to(torch::kFloat16);
  std::vector<uint16_t> out(static_cast<size_t>(h.numel()));
  std::memcpy(out.data(), h.data_ptr(), out.size() * sizeof(uint16_t));
  return out;
}

// Frames [T, H, W, 3] uint8 -> latents [C, T, h, w] as half bits (video) or [C, h, w] (image).
// `seed` seeds any posterior sampling (batch i uses seed + i), so latents never depend on ranks.
std::vector<uint16_t> encode_frames(const io::DecodedClip& clip, models::FrameAutoencoder& ae, int64_t batch, bool video,
                                    uint64_t seed) {
  torch::NoGradGuard ng;
  auto pixels = torch::from_blob(const_cast<uint8_t*>(clip.rgb.data()), {clip.frames, clip.height, clip.width, 3}, torch::kUInt8)
                    .permute({0, 3, 1, 2}).to(torch::kFloat32).div(127.5).sub(1.0);
  std::vector<torch::Tensor> parts;
  for (int64_t i = 0; i < clip.frames; i += batch) parts.push_back(ae.encode(pixels.slice(0, i, std::min<int64_t>(clip.frames, i + batch)), seed + static_cast<uint64_t>(i)));
  auto z = torch::cat(parts, 0);  // [T, C, h, w]
  if (video) z = z.permute({1, 0, 2, 3});
  else z = z[0];
  return half_bits(z);
}

std::vector<uint16_t> encode_text(const std::string& caption, models::TextEncoder& te) {
  return half_bits(te.encode({caption})[0]);
}

struct ShardJob {
  stdfs::path input, output;
  bool video;
};

// Processes one shard into its output file; returns the counts for the manifest entry.
json process_shard(const config::Config& cfg, const ShardJob& job, Encoders& enc, int rank, MetricsWriter& metrics,
                   const std::string& stage_hash) {
  const auto& p = cfg.prep;
  auto t0 = std::chrono::steady_clock::now();
  const int64_t res = p.resolution, f = enc.ae->downsample(), c = enc.ae->latent_channels();
  io::LatentShardSpec spec;
  spec.latent_shape = job.video ? std::vector<hsize_t>{hsize_t(c), hsize_t(p.frames), hsize_t(res / f), hsize_t(res / f)}
                                : std::vector<hsize_t>{hsize_t(c), hsize_t(res / f), hsize_t(res / f)};
  spec.text_len = static_cast<hsize_t>(enc.text->max_length());
  spec.text_dim = static_cast<hsize_t>(enc.text->dim());
  spec.frames = job.video ? static_cast<hsize_t>(p.frames) : 0;
  io::LatentShardWriter writer(job.output, spec);

  SkipCounter skips;
  int64_t read = 0, written = 0;
  double fps_sum = 0;
  io::WebDatasetReader reader(job.input);  // throws if the file is not a tar at all
  io::Sample sample;
  while (reader.next(sample)) {
    ++read;
    std::string where = cat(job.input.filename().string(), ":", sample.key);
    auto item = prepare_sample(sample, job.video, where, skips, rank);
    if (!item) continue;
    io::DecodeOptions o;
    o.frames = job.video ? p.frames : 1;
    o.stride = job.video ? p.stride : 1;
    o.width = o.height = static_cast<int>(res);
    o.crop = p.crop == "center" ? io::CropMode::center : io::CropMode::random_resized;
    o.scale_min = job.video ? p.crop_scale_min : p.image_crop_scale_min;
    o.seed = checksum::hash64(sample.key, static_cast<uint64_t>(cfg.run.seed));
    o.start = job.video ? -1 : 0;
    o.threads = 1;
    io::DecodedClip clip;
    try {
      clip = io::decode_clip(item->media->data(), item->media->size(), cat(where, ".", item->media_ext), o);
    } catch (const io::ClipTooShort& e) {
      skips.add("too_short", e.what(), rank);
      continue;
    } catch (const DataError& e) {
      skips.add(job.video ? "corrupt_video" : "corrupt_image", e.what(), rank);
      continue;
    }
    auto latent = encode_frames(clip, *enc.ae, p.encode_batch, job.video, o.seed ^ 0x5eedULL);
    auto text = encode_text(item->caption, *enc.text);
    writer.append(latent.data(), text.data(), item->caption, sample.key, job.video ? clip.frame_indices : std::vector<int64_t>{});
    fps_sum += clip.fps;
    ++written;
  }
  if (reader.error()) {
    // The sample cut by the truncation is lost; everything before it is kept.
    skips.add("truncated_tar", *reader.error(), rank);
  }
  writer.set_attr("schema_version", int64_t{1});
  writer.set_attr("kind", std::string(job.video ? "video" : "image"));
  writer.set_attr("source_shard", job.input.string());
  writer.set_attr("scaling_factor", enc.ae->scaling_factor());
  writer.set_attr("autoencoder", enc.ae->name());
  writer.set_attr("text_encoder", enc.text->name());
  writer.set_attr("resolution", res);
  writer.set_attr("num_frames", job.video ? p.frames : int64_t{1});
  writer.set_attr("frame_stride", job.video ? p.stride : int64_t{1});
  writer.set_attr("fps", written ? fps_sum / written : 0.0);
  writer.set_attr("config_hash", stage_hash);  // the keys that determine this output, not paths
  writer.finish();

  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json counts{{"samples_read", read}, {job.video ? "clips_written" : "images_written", written}, {"skipped", skips.counts()}};
  metrics.write({{"event", "prep_shard"}, {"rank", rank}, {"input", job.input.string()}, {"output", job.output.string()},
                 {"samples", read}, {"written", written}, {"seconds", secs}, {"samples_per_s", secs > 0 ? read / secs : 0.0}});
  return counts;
}

}  // namespace

int run_prep(const config::Config& cfg, const dist::DistContext& ctx) {
  const auto& p = cfg.prep;
  stdfs::path run_dir = cfg.run.dir, out_dir = run_dir / "prep";
  stdfs::path vdir = p.videos.empty() ? run_dir / "data" / "videos" : stdfs::path(p.videos);
  stdfs::path idir = p.images.empty() ? run_dir / "data" / "images" : stdfs::path(p.images);
  auto videos = list_shards(vdir, true);
  auto images = p.encode_images ? list_shards(idir, !p.images.empty()) : std::vector<stdfs::path>{};
  if (ctx.is_root()) fs::make_dirs(out_dir);
  ctx.barrier();

  int threads = resolve_threads(cfg, ctx);
  torch::set_num_threads(threads);
  Encoders enc{models::make_autoencoder(cfg.models.autoencoder), models::make_text_encoder(cfg.models.text_encoder, run_dir)};
  require<ConfigError>(p.resolution % enc.ae->downsample() == 0, "prep.resolution = ", p.resolution,
                       " is not divisible by the autoencoder's down-sampling factor ", enc.ae->downsample(), " (",
                       enc.ae->name(), ")");
  StageRun stage("prep", cfg, ctx,
                 {"prep.frames", "prep.stride", "prep.resolution", "prep.crop", "prep.crop_scale_min",
                  "prep.image_crop_scale_min", "prep.encode_batch", "models.autoencoder.kind",
                  "models.autoencoder.factor", "models.autoencoder.scaling_factor", "models.autoencoder.mode",
                  "models.text_encoder.kind", "models.text_encoder.max_length", "models.text_encoder.dim",
                  "models.text_encoder.seed", "run.seed"},
                 // Model folders enter by content (weights, vocabulary), never by path.
                 cat(enc.ae->content_hash(), "|", enc.text->content_hash()));

  std::vector<ShardJob> jobs;
  char name[64];
  for (size_t i = 0; i < videos.size(); ++i) {
    std::snprintf(name, sizeof name, "video-%05zu.h5", i);
    jobs.push_back({videos[i], out_dir / name, true});
  }
  for (size_t i = 0; i < images.size(); ++i) {
    std::snprintf(name, sizeof name, "image-%05zu.h5", i);
    jobs.push_back({images[i], out_dir / name, false});
  }
  int64_t mine = 0;
  for (size_t j = 0; j < jobs.size(); ++j) mine += static_cast<int>(j % ctx.world_size()) == ctx.rank();
  if (ctx.is_root())
    log::info("prep: ", videos.size(), " video and ", images.size(), " image shards over ", ctx.world_size(), " ranks, ",
              threads, " threads each; encoders ", enc.ae->name(), ", ", enc.text->name());

  MetricsWriter metrics(out_dir / cat("metrics-rank", ctx.rank(), ".jsonl"));
  Progress progress(cat("prep (rank ", ctx.rank(), ")"), mine, "shards", ctx.is_root());
  std::vector<std::string> errors;
  for (size_t j = 0; j < jobs.size(); ++j) {
    if (static_cast<int>(j % ctx.world_size()) != ctx.rank()) continue;
    const ShardJob& job = jobs[j];
    try {
      json input = manifest::file_entry(run_dir, job.input);
      if (auto prev = stage.reusable(job.output, input["checksum"])) {
        log::info("prep: ", job.output.filename().string(), " recorded complete for ", job.input.filename().string(), ", kept");
        stage.record_reused(*prev);
      } else {
        json counts = process_shard(cfg, job, enc, ctx.rank(), metrics, stage.stage_hash());
        stage.record_output(job.output, {{"input", input}, {"counts", counts}});
        log::debug("prep: wrote ", job.output.string(), " ", counts.dump());
      }
    } catch (const std::exception& e) {
      // The whole shard is unusable (not a tar, unreadable, write failure): fail it, go on.
      log::error("prep: shard ", job.input.string(), " (rank ", ctx.rank(), "): ", e.what());
      errors.push_back(cat("shard ", job.input.string(), ": ", e.what()));
    }
    progress.add();
  }
  progress.finish();
  bool ok = stage.finish(errors);
  if (ctx.is_root()) {
    auto doc = stage.manifest().read();
    auto rec = manifest::find_record(doc, stage.id());
    log::info("prep: ", ok ? "complete" : "FAILED", "; counts ", rec ? (*rec)["counts"].dump() : "?");
  }
  return ok ? 0 : 1;
}

}  // namespace mcm::stages
