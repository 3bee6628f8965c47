// `mcm synth`: the bundled data set as real WebDataset shards. Shards are split across ranks
// (shard i on rank i % world); every sample is seeded by its key, so any world size writes
// byte-identical shards. Broken samples are planted on request (synth.broken) for tests.
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/progress.hpp"
#include "core/rng.hpp"
#include "data_prep/stages.hpp"
#include "data_prep/synth_config.hpp"
#include "world/synth_world.hpp"
#include "io/media_encode.hpp"
#include "io/tar.hpp"
#include "stages/stage_run.hpp"
#include "stages/stage_table.hpp"

namespace mcm::stages {
namespace {
using json = nlohmann::json;
namespace stdfs = std::filesystem;

std::string key_of(int64_t shard, int64_t index) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%05lld%04lld", static_cast<long long>(shard), static_cast<long long>(index));
  return buf;
}

// Which sample receives each planted defect: spread over the shards, never the same sample.
struct Plan {
  std::map<std::string, std::string> video_defect, image_defect;  // key -> kind
  bool truncate_last_video_shard = false;
};

Plan plan_broken(const SynthSection& s, const std::vector<std::vector<std::string>>& video_keys,
                 const std::vector<std::vector<std::string>>& image_keys) {
  Plan p;
  std::vector<std::string> vkeys, ikeys;
  for (auto& sh : video_keys) vkeys.insert(vkeys.end(), sh.begin(), sh.end());
  for (auto& sh : image_keys) ikeys.insert(ikeys.end(), sh.begin(), sh.end());
  size_t vi = 1, ii = 1;
  std::set<std::string> kinds(s.broken.begin(), s.broken.end());
  for (auto& k : kinds) {
    if (k == "truncated_tar") { p.truncate_last_video_shard = true; continue; }
    bool image = (k == "zero_byte_jpg" || k == "truncated_jpg");
    auto& keys = image ? ikeys : vkeys;
    auto& next = image ? ii : vi;
    require<ConfigError>(next < keys.size(), "synth.broken: not enough ", image ? "images" : "videos", " to plant \"", k, "\"");
    (image ? p.image_defect : p.video_defect)[keys[next]] = k;
    next += 3;  // skip ahead so defects land in different shards when there are several
  }
  return p;
}

std::string shard_name(size_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%05zu.tar", i);
  return buf;
}

std::vector<std::vector<std::string>> keys_per_shard(int64_t n, int64_t shards) {
  std::vector<std::vector<std::string>> out(shards);
  for (int64_t s = 0; s < shards; ++s)
    for (int64_t i = s * n / shards, j = 0; i < (s + 1) * n / shards; ++i, ++j) out[s].push_back(key_of(s, j));
  return out;
}

void write_video_shard(const config::Config& cfg, const stdfs::path& path, const std::vector<std::string>& keys,
                       const Plan& plan, bool truncate) {
  const auto& s = cfg.section<SynthSection>();
  io::TarWriter tar(path);
  int w = static_cast<int>(s.width), h = static_cast<int>(s.height);
  for (size_t n = 0; n < keys.size(); ++n) {
    const std::string& key = keys[n];
    const uint64_t index = rng::index_of(key), seed = static_cast<uint64_t>(cfg.run.seed);
    synth::Scene scene = synth::draw_scene(rng::key(seed, "synth", index, "scene"));
    auto it = plan.video_defect.find(key);
    std::string defect = it == plan.video_defect.end() ? "" : it->second;
    int frames = defect == "short_clip" ? 2 : static_cast<int>(s.frames);
    std::string caption = synth::video_caption(scene);
    json meta{{"key", key}, {"caption", caption}, {"status", "success"}, {"error_message", nullptr},
              {"url", "synth://" + key}, {"shape", scene.shape}, {"colour", scene.colour},
              {"direction", scene.direction}, {"speed", scene.speed}, {"background", scene.background},
              {"watermark", s.watermark}, {"width", w}, {"height", h}, {"frames", frames}, {"fps", s.fps}};
    if (defect != "no_media") {
      std::vector<uint8_t> rgb(static_cast<size_t>(frames) * w * h * 3);
      synth::Degradation d{s.blur, s.noise, s.watermark, rng::key(seed, "synth", index, "noise")};
      for (int t = 0; t < frames; ++t) {
        uint8_t* f = rgb.data() + static_cast<size_t>(t) * w * h * 3;
        synth::render_frame(scene, t, w, h, 1, f);
        synth::degrade(f, w, h, d, t);
      }
      auto mp4 = io::encode_mp4(rgb.data(), frames, w, h, {static_cast<int>(s.fps), static_cast<int>(s.video_crf)});
      if (defect == "corrupt_mp4") {  // keep the header, scramble the rest: the moov/mdat are garbage
        rng::Stream scramble(rng::key(seed, "synth", index, "corrupt_mp4"));
        for (size_t i = 48; i < mp4.size(); ++i) mp4[i] = static_cast<uint8_t>(scramble.next_u64());
      }
      tar.add(key + ".mp4", mp4);
    } else {
      meta["status"] = "failed_to_download";
      meta["error_message"] = "planted: no media";
    }
    if (defect == "missing_caption" || defect == "bad_utf8_caption") meta.erase("caption");
    if (defect == "bad_utf8_caption") tar.add(key + ".txt", std::string("a \xff\xfe broken \xc3 caption"));
    else if (defect != "missing_caption") tar.add(key + ".txt", caption);
    std::string js = meta.dump(4);
    if (truncate && n + 1 == keys.size()) {
      tar.finish_truncated(key + ".json", js, js.size() / 2);
      return;
    }
    tar.add(key + ".json", js);
  }
  tar.finish();
}

void write_image_shard(const config::Config& cfg, const stdfs::path& path, const std::vector<std::string>& keys,
                       const Plan& plan) {
  const auto& s = cfg.section<SynthSection>();
  io::TarWriter tar(path);
  int side = static_cast<int>(s.image_size);
  std::vector<uint8_t> rgb(static_cast<size_t>(side) * side * 3);
  for (auto& key : keys) {
    synth::Scene scene = synth::draw_scene(rng::key(static_cast<uint64_t>(cfg.run.seed), "synth", rng::index_of(key), "image scene"));
    synth::render_frame(scene, 0, side, side, 4, rgb.data());
    auto jpg = io::encode_jpeg(rgb.data(), side, side, static_cast<int>(s.image_qscale));
    auto it = plan.image_defect.find(key);
    if (it != plan.image_defect.end()) {
      if (it->second == "zero_byte_jpg") jpg.clear();
      else jpg.resize(jpg.size() / 2);
    }
    std::string caption = synth::image_caption(scene);
    json meta{{"key", key}, {"caption", caption}, {"status", "success"}, {"error_message", nullptr},
              {"url", "synth://image/" + key}, {"width", side}, {"height", side}, {"original_width", side},
              {"original_height", side}, {"shape", scene.shape}, {"colour", scene.colour},
              {"background", scene.background}, {"watermark", false}};
    tar.add(key + ".jpg", jpg);
    tar.add(key + ".txt", caption);
    tar.add(key + ".json", meta.dump(4));
  }
  tar.finish();
}

}  // namespace

// Version of synth's algorithm (rendering, encoding, planting). It enters the stage hash: bump
// it whenever a change alters the shards synth writes for the same config.
constexpr const char* kSynthCodeVersion = "3";  // 3: mp4 encoding no longer reads past the frame (deterministic bytes)

MCM_CONFIG_SECTION(SynthSection);

int run_synth(const config::Config& cfg, const dist::DistContext& ctx) {
  const auto& s = cfg.section<SynthSection>();
  stdfs::path run_dir = cfg.run.dir, data = run_dir / "data";
  if (ctx.is_root()) {
    fs::make_dirs(data / "videos");
    fs::make_dirs(data / "images");
  }
  ctx.barrier();
  StageRun stage("synth", kSynthCodeVersion, cfg, ctx, {"synth", "run.seed"});

  auto vkeys = keys_per_shard(s.videos, s.video_shards);
  auto ikeys = s.images > 0 ? keys_per_shard(s.images, s.image_shards) : std::vector<std::vector<std::string>>{};
  Plan plan = plan_broken(s, vkeys, ikeys);

  // Global job list: vocabulary, video shards, image shards; job j runs on rank j % world.
  struct Job { stdfs::path out; int kind; size_t shard; };
  std::vector<Job> jobs{{data / "vocab.txt", 0, 0}};
  for (size_t i = 0; i < vkeys.size(); ++i) jobs.push_back({data / "videos" / shard_name(i), 1, i});
  for (size_t i = 0; i < ikeys.size(); ++i) jobs.push_back({data / "images" / shard_name(i), 2, i});

  std::vector<std::string> errors;
  int64_t mine = 0;
  for (size_t j = 0; j < jobs.size(); ++j) mine += static_cast<int>(j % ctx.world_size()) == ctx.rank();
  Progress progress(cat("synth (rank ", ctx.rank(), ")"), mine, "files", ctx.is_root());
  for (size_t j = 0; j < jobs.size(); ++j) {
    if (static_cast<int>(j % ctx.world_size()) != ctx.rank()) continue;
    const Job& job = jobs[j];
    try {
      if (auto prev = stage.reusable(job.out, "")) {
        log::debug("synth: ", job.out, " recorded complete, kept");
        stage.record_reused(*prev);
      } else {
        json counts;
        if (job.kind == 0) {
          std::string text = "<pad>\n<bos>\n<eos>\n<unk>\n";
          for (auto& w : synth::vocabulary()) text += w + "\n";
          fs::write_atomic(job.out, text);
          counts = json::object();
        } else if (job.kind == 1) {
          bool trunc = plan.truncate_last_video_shard && job.shard + 1 == vkeys.size();
          write_video_shard(cfg, job.out, vkeys[job.shard], plan, trunc);
          counts = {{"videos", vkeys[job.shard].size()}};
        } else {
          write_image_shard(cfg, job.out, ikeys[job.shard], plan);
          counts = {{"images", ikeys[job.shard].size()}};
        }
        json planted = json::object();
        const std::vector<std::string> none;
        const auto& keys = job.kind == 1 ? vkeys[job.shard] : job.kind == 2 ? ikeys[job.shard] : none;
        for (auto& k : keys) {
          auto& m = job.kind == 1 ? plan.video_defect : plan.image_defect;
          if (m.count(k)) planted[k] = m.at(k);
        }
        if (job.kind == 1 && plan.truncate_last_video_shard && job.shard + 1 == vkeys.size()) planted[keys.back()] = "truncated_tar";
        json extra{{"counts", counts}};
        if (!planted.empty()) extra["planted"] = planted;
        stage.record_output(job.out, extra);
      }
    } catch (const std::exception& e) {
      log::error("synth: ", job.out.string(), ": ", e.what());
      errors.push_back(cat(job.out.string(), ": ", e.what()));
    }
    progress.add();
  }
  progress.finish();
  bool ok = stage.finish(errors);
  if (ctx.is_root()) log::info("synth: ", ok ? "complete" : "FAILED", ", ", vkeys.size(), " video and ", ikeys.size(),
                               " image shards in ", data.string());
  return ok ? 0 : 1;
}

MCM_STAGE("synth", 10, run_synth, "write the bundled synthetic WebDataset shards");

}  // namespace mcm::stages
