// `mcm prep`: tar shards -> HDF5 latent shards. Rank 0 lists the inputs once and broadcasts the
// list; shard i goes to rank i % world. With `--part I/N` (one task of slurm/prep.sbatch's job
// array) the process group takes the I-th of N contiguous ranges of the list (videos, then
// images) and records the part, so the N records together make the stage complete. Each output is named after its input shard
// (prep/video-<stem>.h5, beside it <stem>'s skip log), so outputs stay valid when shards are
// added or removed and any world size writes the same files. Sample faults are skipped and
// logged per sample; a shard that cannot be read fails the stage (after the other shards
// finish) unless prep.max_failed_shards accepts it, so it is never silently dropped.
#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/checksum.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/progress.hpp"
#include "data_prep/prep_config.hpp"
#include "data_prep/prep_shard.hpp"
#include "data_prep/stages.hpp"
#include "stages/stage_run.hpp"
#include "stages/stage_table.hpp"

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
  for (auto& name : fs::list_dir(where))
    if (stdfs::path p = where / name; p.extension() == ".tar" && stdfs::is_regular_file(p)) out.push_back(p);
  std::sort(out.begin(), out.end());
  require<IoError>(!required || !out.empty(), "prep: no *.tar shards in ", where);
  return out;
}

// Version of prep's algorithm (decoding, window rule, crop, encoding order, seeds). It enters
// the stage hash: bump it whenever a change alters the bytes prep writes for the same input and
// config, so old shards are redone instead of silently kept.
constexpr const char* kPrepCodeVersion = "2";

MCM_CONFIG_SECTION(PrepSection);

// The input list, made on rank 0 and broadcast (one directory listing per run, and every rank
// agrees on it even if the folder changes meanwhile). An error is raised on every rank.
std::vector<stdfs::path> shared_list(const dist::DistContext& ctx, const stdfs::path& where, bool required) {
  std::string msg;
  if (ctx.is_root()) {
    try {
      for (auto& p : list_shards(where, required)) msg += p.string() + '\n';
      msg = "ok\n" + msg;
    } catch (const std::exception& e) {  // filesystem errors too: every rank must learn of it
      msg = cat("error\n", e.what());
    }
  }
  msg = ctx.broadcast(msg);
  if (msg.rfind("error\n", 0) == 0) throw IoError(msg.substr(6));
  std::vector<stdfs::path> out;
  std::istringstream in(msg.substr(3));
  for (std::string line; std::getline(in, line);) if (!line.empty()) out.emplace_back(line);
  return out;
}

// An exception's message for logs and the manifest, without a c10::Error's C++ backtrace.
std::string c10_message(const std::exception& e) {
  if (auto* c = dynamic_cast<const c10::Error*>(&e)) return c->what_without_backtrace();
  return e.what();
}

// prep/<kind>-<stem>.h5 and its skip log; two inputs with one stem would overwrite each other.
std::vector<ShardJob> make_jobs(const stdfs::path& out_dir, const std::vector<stdfs::path>& inputs, bool video) {
  std::vector<ShardJob> jobs;
  std::set<std::string> stems;
  for (auto& in : inputs) {
    std::string stem = in.stem().string();
    require<IoError>(stems.insert(stem).second, "prep: two input shards named \"", stem, ".tar\" (", in, ")");
    std::string base = cat(video ? "video-" : "image-", stem);
    jobs.push_back({in, out_dir / (base + ".h5"), out_dir / (base + ".skipped.jsonl"), video});
  }
  return jobs;
}

torch::ScalarType encoder_dtype(const std::string& name, const torch::Device& device) {
  if (name == "float32") return torch::kFloat32;
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "float16") return torch::kFloat16;
  return device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;  // auto
}

}  // namespace

int run_prep(const config::Config& cfg, const dist::DistContext& ctx) {
  const auto& p = cfg.section<PrepSection>();
  stdfs::path run_dir = cfg.run.dir, out_dir = run_dir / "prep";
  stdfs::path vdir = p.videos.empty() ? run_dir / "data" / "videos" : stdfs::path(p.videos);
  stdfs::path idir = p.images.empty() ? run_dir / "data" / "images" : stdfs::path(p.images);
  auto videos = shared_list(ctx, vdir, true);
  auto images = p.encode_images ? shared_list(ctx, idir, !p.images.empty()) : std::vector<stdfs::path>{};
  if (ctx.is_root()) fs::make_dirs(out_dir);
  ctx.barrier();

  int threads = resolve_threads(cfg, ctx);
  torch::set_num_threads(threads);
  const int workers = p.decode_workers > 0 ? static_cast<int>(p.decode_workers) : threads;
  const torch::Device device = rank_device(ctx);
  const torch::ScalarType dtype = encoder_dtype(p.dtype, device);
  PrepEncoders enc{models::make_autoencoder(cfg.models.autoencoder), models::make_text_encoder(cfg.models.text_encoder, run_dir)};
  enc.ae->place(device, dtype);
  enc.text->place(device, dtype);
  require<ConfigError>(p.resolution % enc.ae->downsample() == 0, "prep.resolution = ", p.resolution,
                       " is not divisible by the autoencoder's down-sampling factor ", enc.ae->downsample(), " (",
                       enc.ae->name(), ")");
  StageRun stage("prep", kPrepCodeVersion, cfg, ctx,
                 {"prep.frames", "prep.stride", "prep.resolution", "prep.crop", "prep.crop_scale_min",
                  "prep.image_crop_scale_min", "prep.encode_batch", "prep.batch_clips", "prep.clips_per_video",
                  "prep.min_frames", "prep.dtype", "models.autoencoder.kind", "models.autoencoder.factor",
                  "models.autoencoder.scaling_factor", "models.autoencoder.mode", "models.text_encoder.kind",
                  "models.text_encoder.max_length", "models.text_encoder.dim", "models.text_encoder.seed", "run.seed"},
                 // Model folders enter by content (weights, vocabulary), never by path; the
                 // device type too, since GPU kernels round differently from CPU ones.
                 cat(enc.ae->content_hash(), "|", enc.text->content_hash(), "|",
                     device.is_cuda() ? "cuda" : "cpu"));

  std::vector<ShardJob> jobs = make_jobs(out_dir, videos, true), image_jobs = make_jobs(out_dir, images, false);
  jobs.insert(jobs.end(), image_jobs.begin(), image_jobs.end());
  // This part's contiguous range; a part past the end of a short list has nothing to do.
  const auto [part, parts] = cfg.part;
  const int64_t total = static_cast<int64_t>(jobs.size());
  const int64_t lo = total * part / parts, hi = total * (part + 1) / parts;
  jobs = std::vector<ShardJob>(jobs.begin() + lo, jobs.begin() + hi);
  if (ctx.is_root() && parts > 1)
    log::info("prep: part ", part, " of ", parts, ": shards ", lo, "..", hi - 1, " of ", total, hi == lo ? " (none)" : "");
  int64_t mine = 0;
  for (size_t j = 0; j < jobs.size(); ++j) mine += static_cast<int>(j % ctx.world_size()) == ctx.rank();
  if (ctx.is_root())
    log::info("prep: ", videos.size(), " video and ", images.size(), " image shards over ", ctx.world_size(), " ranks, ",
              threads, " torch threads and ", workers, " decode workers each; encoders ", enc.ae->name(), ", ",
              enc.text->name(), " on ", device.str(), " (", c10::toString(dtype), ")");

  MetricsWriter metrics(out_dir / cat("metrics-rank", ctx.rank(), ".jsonl"));
  Progress progress(cat("prep (rank ", ctx.rank(), ")"), mine, "shards", ctx.is_root());
  SkipLog::LogBudget budget;
  std::vector<std::string> failed, unreadable;  // "shard: why"
  for (size_t j = 0; j < jobs.size(); ++j) {
    if (static_cast<int>(j % ctx.world_size()) != ctx.rank()) continue;
    const ShardJob& job = jobs[j];
    try {
      json input;
      try {
        input = manifest::file_entry(run_dir, job.input);  // reads the whole input for its checksum
      } catch (const Error& e) {
        throw UnreadableShard(e.what());
      }
      auto prev = stage.reusable(job.output, input["checksum"]);
      auto prev_log = stage.reusable(job.skip_log, input["checksum"]);
      if (prev && prev_log) {
        log::info("prep: ", job.output.filename().string(), " recorded complete for ", job.input.filename().string(), ", kept");
        stage.record_reused(*prev);
        stage.record_reused(*prev_log);
      } else {
        PrepShardOptions opt{workers, stage.stage_hash(), ctx.rank()};
        json r = process_shard(cfg, job, enc, opt, budget);
        // The log first: a shard is recorded only once its log is, so a kill in between redoes both.
        json log_entry = stage.record_output(job.skip_log, {{"input", input}, {"kind", "skip_log"}});
        stage.record_output(job.output, {{"input", input}, {"counts", r["counts"]}, {"skip_log", log_entry["path"]}});
        const double secs = r["timing"]["seconds"].get<double>();
        const int64_t n = r["counts"]["samples_read"].get<int64_t>();
        metrics.write({{"event", "prep_shard"}, {"rank", ctx.rank()}, {"input", job.input.string()},
                       {"output", job.output.string()}, {"counts", r["counts"]}, {"timing", r["timing"]},
                       {"samples_per_s", secs > 0 ? static_cast<double>(n) / secs : 0.0}});
        log::debug("prep: wrote ", job.output.string(), " ", r.dump());
      }
    } catch (const std::exception& e) {
      // The shard is lost (not a tar, unreadable, write failure, out of memory): fail it, go on.
      // Only an input that cannot be read counts towards prep.max_failed_shards; anything else
      // (our output, the device, a bug) fails the stage whatever the limit.
      const std::string why = c10_message(e);
      log::error("prep: shard ", job.input.string(), " (rank ", ctx.rank(), "): ", why);
      (dynamic_cast<const UnreadableShard*>(&e) ? unreadable : failed).push_back(cat("shard ", job.input.string(), ": ", why));
    }
    progress.add();
  }
  progress.finish();

  // prep.max_failed_shards: a user may accept a stated number of unreadable shards; they are
  // named in the record either way, and more than that fails the stage.
  json all_unreadable = json::array();
  for (auto& part : ctx.allgather(json(unreadable).dump()))
    for (auto& f : json::parse(part)) all_unreadable.push_back(f);
  const bool accepted = static_cast<int64_t>(all_unreadable.size()) <= p.max_failed_shards;
  if (!accepted) failed.insert(failed.end(), unreadable.begin(), unreadable.end());
  json fields = all_unreadable.empty()
                    ? json::object()
                    : json{{"failed_shards", all_unreadable}, {"max_failed_shards", p.max_failed_shards}};
  if (parts > 1) fields["part"] = {{"index", part}, {"count", parts}, {"first_shard", lo}, {"end_shard", hi}, {"shards", total}};
  bool ok = stage.finish(failed, fields);
  if (ctx.is_root()) {
    if (accepted && !all_unreadable.empty())
      log::warn("prep: ", all_unreadable.size(), " unreadable shard(s) accepted by prep.max_failed_shards = ", p.max_failed_shards,
                "; named in the manifest under \"failed_shards\"");
    auto doc = stage.manifest().read();
    auto rec = manifest::find_record(doc, stage.id());
    log::info("prep: ", ok ? "complete" : "FAILED", "; counts ", rec ? (*rec)["counts"].dump() : "?",
              "; skipped samples are listed in ", (out_dir / "*.skipped.jsonl").string());
  }
  return ok ? 0 : 1;
}

MCM_SPLIT_STAGE("prep", 20, run_prep, "decode and encode tar shards into HDF5 latent shards");

}  // namespace mcm::stages
