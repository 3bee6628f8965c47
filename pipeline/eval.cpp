// `mcm eval`: metrics of every file `mcm sample` wrote (sample/samples.json). FVD against prep's
// clips decoded by the autoencoder (the reference set), with StyleGAN-V's I3D TorchScript when
// eval.detector names one, else the embedded detector trained on the run's own clips
// (eval/synth_detector.hpp), through the same Fréchet code; and, for synthetic-world prompts, the
// caption-fidelity analyser's colour, shape and direction accuracies with their p-values; CLIP
// score when eval.clip_model names a CLIP; and frame quality against prep's high-quality stills:
// the Fréchet distance of frame features (FID Inception TorchScript, or the embedded frame
// detector) to the stills', the watermark rate and sharpness (eval/frame_quality.hpp). The
// training videos' own frames are scored the same way ("reference"), which both validates the
// rules and gives the scale. Ranks split the clips; moments and counts are float64 sums gathered
// from every rank and added in rank order. Writes eval/metrics.json with the protocol.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>

#include "core/checksum.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "eval/caption_fidelity.hpp"
#include "eval/clip_score.hpp"
#include "eval/frame_quality.hpp"
#include "eval/frechet.hpp"
#include "eval/synth_detector.hpp"
#include "eval/video_detector.hpp"
#include "io/hdf5_store.hpp"
#include "models/encoders.hpp"
#include "models/weights.hpp"
#include "pipeline/eval_config.hpp"
#include "pipeline/prep_shards.hpp"
#include "pipeline/stages.hpp"
#include "pipeline/teacher_fidelity.hpp"
#include "stages/stage_run.hpp"
#include "stages/stage_table.hpp"

namespace mcm::stages {
namespace {
using json = nlohmann::json;
namespace stdfs = std::filesystem;

constexpr const char* kEvalCodeVersion = "2";
MCM_CONFIG_SECTION(EvalSection);

// Every rank's float64 sums, added in rank order (the same on every rank).
std::vector<double> sum_over_ranks(const std::vector<double>& mine, const dist::DistContext& ctx) {
  std::vector<double> total(mine.size(), 0.0);
  const std::string bytes(reinterpret_cast<const char*>(mine.data()), mine.size() * sizeof(double));
  for (const auto& part : ctx.allgather(bytes)) {
    require<DataError>(part.size() == bytes.size(), "eval: ranks disagree on the number of sums (", part.size(), " vs ",
                       bytes.size(), " bytes)");
    const auto* d = reinterpret_cast<const double*>(part.data());
    for (size_t i = 0; i < total.size(); ++i) total[i] += d[i];
  }
  return total;
}

// Every rank's float64 moment sums (a rank without features adds zeros), added in rank order.
eval::FeatureStats gather(const eval::FeatureStats& mine, int64_t dim, const dist::DistContext& ctx) {
  std::vector<double> flat(static_cast<size_t>(1 + dim + dim * dim), 0.0);
  if (mine.count > 0) {
    auto f = mine.flat().contiguous();
    require<DataError>(f.numel() == static_cast<int64_t>(flat.size()), "eval: features of width ", mine.dim(), ", expected ", dim);
    std::copy(f.data_ptr<double>(), f.data_ptr<double>() + f.numel(), flat.begin());
  }
  auto total = sum_over_ranks(flat, ctx);
  require<DataError>(total[0] > 0, "eval: no features on any rank");
  return eval::FeatureStats::from_flat(torch::tensor(total, torch::kFloat64), dim);
}

eval::FrameQualityStats gather(const eval::FrameQualityStats& q, const dist::DistContext& ctx) {
  auto t = sum_over_ranks({static_cast<double>(q.frames), static_cast<double>(q.watermarked), q.sharpness_sum}, ctx);
  eval::FrameQualityStats s;
  s.frames = static_cast<int64_t>(t[0]);
  s.watermarked = static_cast<int64_t>(t[1]);
  s.sharpness_sum = t[2];
  return s;
}

// Prep's first `limit` samples of the shards (shard order), decoded to uint8 [N, T, H, W, 3]
// (T = 1 for stills), with captions.
torch::Tensor decode_shards(const ShardInfo& info, int64_t limit, models::FrameAutoencoder& ae, std::vector<std::string>& captions) {
  std::vector<torch::Tensor> lat;
  for (const auto& shard : info.shards) {
    io::LatentShardReader r(shard);
    auto caps = r.strings("caption");
    for (hsize_t i = 0; i < r.size() && static_cast<int64_t>(lat.size()) < limit; ++i) {
      auto half = r.latent(i);
      auto l = torch::from_blob(half.data(), info.latent, torch::kFloat16).to(torch::kFloat32).clone();
      lat.push_back(l.dim() == 3 ? l.unsqueeze(1) : l);  // a still [C, H, W] as a one-frame clip
      captions.push_back(caps[i]);
    }
  }
  std::vector<torch::Tensor> clips;
  const int64_t chunk = 64;
  for (size_t b = 0; b < lat.size(); b += chunk) {
    auto part = torch::stack(std::vector<torch::Tensor>(lat.begin() + static_cast<std::ptrdiff_t>(b),
                                                        lat.begin() + static_cast<std::ptrdiff_t>(std::min(lat.size(), b + chunk))));
    for (auto& c : decode_clips(ae, part)) clips.push_back(clip_to_uint8(c));
  }
  return torch::stack(clips);
}

// What one set of clips accumulates on a rank: video and frame feature moments, frame quality,
// CLIP score sums, and the caption-fidelity analyses.
struct SetStats {
  eval::FeatureStats video, frames;
  eval::FrameQualityStats quality;
  double clip_sum = 0;
  int64_t clip_count = 0;
  nlohmann::json fidelity = nlohmann::json::array();
};

struct Detectors {
  eval::VideoDetector* video = nullptr;   ///< null: no video features
  eval::ImageDetector* frames = nullptr;  ///< null: no image set, no frame metrics
  eval::ClipScorer* clip = nullptr;       ///< null: no CLIP score
  bool fidelity = false;                  ///< analyse synthetic-world prompts' clips
};

// Rows rank, rank + world, ... of `n` clips given by `row(i)` (uint8 [T, H, W, 3]) with their
// prompts, in batches of `batch` clips.
SetStats my_stats(const Detectors& det, int64_t n, const std::function<torch::Tensor(int64_t)>& row,
                  const std::function<std::string(int64_t)>& prompt, int64_t batch, const dist::DistContext& ctx) {
  SetStats s;
  std::vector<torch::Tensor> buf;
  std::vector<std::string> prompts;
  auto flush = [&] {
    if (buf.empty()) return;
    auto v = torch::stack(buf).contiguous();  // [B, T, H, W, 3]
    if (det.video) s.video.add(det.video->features(v));
    if (det.frames) {
      auto f = v.view({-1, v.size(2), v.size(3), 3});
      s.frames.add(det.frames->features(f));
      s.quality.merge(eval::analyse_frames(f.data_ptr<uint8_t>(), f.size(0), static_cast<int>(f.size(2)), static_cast<int>(f.size(1))));
    }
    if (det.clip) {
      s.clip_sum += det.clip->scores(v, prompts).sum().item<double>();
      s.clip_count += v.size(0);
    }
    buf.clear();
    prompts.clear();
  };
  for (int64_t i = ctx.rank(); i < n; i += ctx.world_size()) {
    auto clip = row(i).contiguous();
    const auto p = prompt(i);
    bool synthetic = det.fidelity;
    if (synthetic) {
      try {
        eval::parse_caption(p);
      } catch (const Error&) {
        synthetic = false;  // not a synthetic-world caption: no ground truth to score against
      }
    }
    if (synthetic) {
      auto a = eval::analyse_clip(clip.data_ptr<uint8_t>(), static_cast<int>(clip.size(0)), static_cast<int>(clip.size(2)),
                                  static_cast<int>(clip.size(1)));
      s.fidelity.push_back({{"index", i}, {"prompt", p}, {"colour", a.found.colour}, {"shape", a.found.shape},
                            {"direction", a.found.direction}});
    }
    buf.push_back(clip);
    prompts.push_back(p);
    if (static_cast<int64_t>(buf.size()) == batch) flush();
  }
  flush();
  return s;
}

// An embedded detector network trained by rank 0 (`train` returns its state and accuracies),
// written to `weights` and recorded, then loaded by every rank into `net`. Returns the training
// accuracies.
template <class Net>
nlohmann::json train_on_root(Net& net, const stdfs::path& weights, StageRun& stage, const dist::DistContext& ctx,
                             const json& input, const std::function<std::vector<double>(Net&)>& train) {
  std::string acc_text;
  if (ctx.is_root()) {
    Net trained{nullptr};
    auto acc = train(trained);
    models::write_tensors(weights, models::state_dict(*trained));
    stage.record_output(weights, {{"kind", "detector"}, {"input", input}});
    acc_text = json(acc).dump();
  }
  acc_text = ctx.broadcast(acc_text);
  models::load_strict(*net, models::read_tensors(weights), weights.string());
  return json::parse(acc_text);
}

}  // namespace

int run_eval(const config::Config& cfg, const dist::DistContext& ctx) {
  const auto& ec = cfg.section<EvalSection>();
  const stdfs::path run_dir = cfg.run.dir, out = run_dir / "eval", index = run_dir / "sample" / "samples.json";
  torch::set_num_threads(resolve_threads(cfg, ctx));
  const torch::Device device = rank_device(ctx);

  require<IoError>(stdfs::is_regular_file(index), "eval: no ", index, ": run `mcm sample` first");
  json jobs;
  try {
    jobs = json::parse(fs::read_text(index));
  } catch (const json::exception& e) {
    throw DataError(cat("eval: ", index, ": ", e.what()));
  }
  ShardInfo info = read_latent_shards(ctx, run_dir / "prep", "eval");
  // The high-quality stills of frame quality: prep's image shards when it wrote them.
  std::optional<ShardInfo> image_info;
  std::string have_images;
  if (ctx.is_root() && !latent_shard_names(run_dir / "prep", "image").empty()) have_images = "1";
  if (!ctx.broadcast(have_images).empty()) image_info = read_latent_shards(ctx, run_dir / "prep", "eval", "image");
  StageRun stage("eval", kEvalCodeVersion, cfg, ctx, {"eval", "models", "run.seed"});
  if (ctx.is_root()) fs::make_dirs(out);
  ctx.barrier();

  auto ae = models::make_autoencoder(cfg.models.autoencoder);
  ae->place(device, torch::kFloat32);
  std::vector<std::string> real_captions, image_captions;
  auto real = decode_shards(info, ec.real_clips, *ae, real_captions);
  const int64_t n_real = real.size(0);
  torch::Tensor stills;  // [N, H, W, 3]
  if (image_info) stills = decode_shards(*image_info, ec.real_images, *ae, image_captions).select(1, 0).contiguous();
  const json prep_input{{"path", (run_dir / "prep").string()}, {"kind", "set"}, {"checksum", info.checksum}};
  auto synthetic_only = [](const char* what, const char* key, const std::string& e) {
    return ConfigError(cat("eval: the embedded ", what, " learns the synthetic world's attributes, but ", e, " (prep's samples); set ",
                           key, " to a TorchScript detector"));
  };

  // The video detector: a TorchScript I3D, or the embedded one trained by rank 0 on the real clips.
  std::unique_ptr<eval::VideoDetector> det;
  json detector_info;
  eval::SynthTrainOptions so;
  so.steps = ec.detector_steps;
  so.seed = static_cast<uint64_t>(cfg.run.seed);
  if (!ec.detector.empty()) {
    det = eval::load_torchscript_detector(ec.detector, device);
    detector_info = {{"kind", "torchscript"}, {"file", ec.detector}};
  } else {
    std::vector<eval::SynthLabels> labels;
    for (const auto& c : real_captions) {
      try {
        labels.push_back(eval::synth_labels(c));
      } catch (const DataError& e) {
        throw synthetic_only("detector", "eval.detector (StyleGAN-V's i3d_torchscript.pt)", e.what());
      }
    }
    const stdfs::path weights = out / "detector.safetensors";
    eval::SynthNet net(so.width);
    auto acc = train_on_root<eval::SynthNet>(net, weights, stage, ctx, prep_input, [&](eval::SynthNet& trained) {
      std::vector<double> a;
      trained = eval::train_synth_net(real, labels, so, &a);
      return a;
    });
    if (ctx.is_root())
      log::info("eval: embedded video detector trained on ", n_real, " clips, accuracy (shape, colour, direction, speed) ", acc.dump());
    det = eval::synth_detector(net, checksum::of_file(weights));
    detector_info = {{"kind", "embedded synth-video-net"}, {"file", stdfs::relative(weights, run_dir).string()},
                     {"steps", so.steps}, {"training_accuracy", acc}};
  }
  detector_info["name"] = det->name();
  detector_info["checksum"] = det->checksum();

  // The frame detector, when there are stills to compare with.
  std::unique_ptr<eval::ImageDetector> frame_det;
  json frame_info;
  if (!image_info) {
    log::warn("eval: no prep/image-*.h5, so no frame quality (run prep with prep.encode_images = true and image shards)");
  } else if (!ec.frame_detector.empty()) {
    frame_det = eval::load_torchscript_image_detector(ec.frame_detector, device);
    frame_info = {{"kind", "torchscript"}, {"file", ec.frame_detector}};
  } else {
    // Every frame of the reference clips (source 0) and every still (source 1).
    std::vector<eval::FrameLabels> labels;
    try {
      for (const auto& c : real_captions)
        for (int64_t t = 0; t < real.size(1); ++t) labels.push_back(eval::frame_labels(c, false));
      for (const auto& c : image_captions) labels.push_back(eval::frame_labels(c, true));
    } catch (const DataError& e) {
      throw synthetic_only("frame detector", "eval.frame_detector (inception-2015-12-05.pt)", e.what());
    }
    const stdfs::path weights = out / "frame_detector.safetensors";
    eval::SynthFrameNet net(so.width);
    auto acc = train_on_root<eval::SynthFrameNet>(net, weights, stage, ctx, prep_input, [&](eval::SynthFrameNet& trained) {
      auto frames = torch::cat({real.view({-1, real.size(2), real.size(3), 3}), stills});
      std::vector<double> a;
      trained = eval::train_synth_frame_net(frames, labels, so, &a);
      return a;
    });
    if (ctx.is_root())
      log::info("eval: embedded frame detector trained on ", labels.size(), " frames and stills, accuracy (shape, colour, source) ",
                acc.dump());
    frame_det = eval::synth_frame_detector(net, checksum::of_file(weights));
    frame_info = {{"kind", "embedded synth-frame-net"}, {"file", stdfs::relative(weights, run_dir).string()},
                  {"steps", so.steps}, {"training_accuracy", acc}};
  }
  if (frame_det) {
    frame_info["name"] = frame_det->name();
    frame_info["checksum"] = frame_det->checksum();
  }
  std::unique_ptr<eval::ClipScorer> clip;
  if (!ec.clip_model.empty()) clip = std::make_unique<eval::ClipScorer>(ec.clip_model, ec.clip_vocab, device, ec.clip_resolution);

  // Reference statistics: the real clips (video features, and their frames' quality against the
  // stills: the rules' validation and the scale), the stills themselves.
  const int64_t dim = det->features(real.slice(0, 0, 1)).size(1);
  const Detectors ref_det{det.get(), frame_det.get(), nullptr, false};
  auto ref = my_stats(ref_det, n_real, [&](int64_t i) { return real[i]; }, [&](int64_t i) { return real_captions[static_cast<size_t>(i)]; },
                      ec.batch, ctx);
  auto real_stats = gather(ref.video, dim, ctx);
  int64_t fdim = 0;
  eval::FeatureStats still_stats;
  json reference_quality;
  if (frame_det) {
    fdim = frame_det->features(stills.slice(0, 0, 1)).size(1);
    // The stills as one-frame clips, through the frame detector and the frame rules only.
    const Detectors still_det{nullptr, frame_det.get(), nullptr, false};
    auto st = my_stats(still_det, stills.size(0), [&](int64_t i) { return stills[i].unsqueeze(0); },
                       [&](int64_t i) { return image_captions[static_cast<size_t>(i)]; }, ec.batch, ctx);
    still_stats = gather(st.frames, fdim, ctx);
    auto ref_frames = gather(ref.frames, fdim, ctx);
    reference_quality = {{"stills", gather(st.quality, ctx).to_json()},
                         {"videos", {{"frame_fd", eval::frechet_distance(ref_frames, still_stats, "reference frames vs the stills")}}}};
    reference_quality["videos"].update(gather(ref.quality, ctx).to_json());
    if (ctx.is_root())
      log::info("eval: reference frame quality: training videos ", reference_quality["videos"].dump(), ", stills ",
                reference_quality["stills"].dump());
  }

  json results = json::object();
  const Detectors job_det{det.get(), frame_det.get(), clip.get(), true};
  for (auto& [name, job] : jobs.items()) {
    const stdfs::path file = run_dir / job.at("file").get<std::string>();
    io::VideoSampleReader r(file);
    const int64_t n = static_cast<int64_t>(r.size());
    const auto shape = r.video_shape();
    require<DataError>(static_cast<int64_t>(shape[0]) == real.size(1) && static_cast<int64_t>(shape[1]) == real.size(2) &&
                           static_cast<int64_t>(shape[2]) == real.size(3),
                       "eval: ", file, " holds clips of ", shape_str(std::vector<int64_t>(shape.begin(), shape.end())),
                       " but the reference clips are ", real.sizes().slice(1));
    auto row = [&](int64_t i) {
      auto v = r.video(static_cast<hsize_t>(i));
      return torch::from_blob(v.data(), {static_cast<int64_t>(shape[0]), static_cast<int64_t>(shape[1]),
                                         static_cast<int64_t>(shape[2]), 3}, torch::kUInt8).clone();
    };
    auto mine = my_stats(job_det, n, row, [&](int64_t i) { return r.prompt(static_cast<hsize_t>(i)); }, ec.batch, ctx);
    const double fvd = eval::frechet_distance(gather(mine.video, dim, ctx), real_stats, cat(name, " vs the reference clips"));
    json res{{"file", job.at("file")}, {"method", job.value("method", "")}, {"steps", job.value("steps", 0)}, {"samples", n},
             {"fvd", fvd}};
    const json fid = gather_fidelity(mine.fidelity, ctx);
    if (!fid["per_prompt"].empty()) res["fidelity"] = fid["score"];
    if (frame_det) {
      res["frame_quality"] = gather(mine.quality, ctx).to_json();
      res["frame_quality"]["frame_fd"] =
          eval::frechet_distance(gather(mine.frames, fdim, ctx), still_stats, cat(name, "'s frames vs the stills"));
    }
    if (clip) {
      auto t = sum_over_ranks({mine.clip_sum, static_cast<double>(mine.clip_count)}, ctx);
      res["clip_score"] = {{"mean", t[0] / t[1]}, {"clamped", std::max(0.0, t[0] / t[1])}, {"clips", t[1]}};
    }
    results[name] = res;
    if (ctx.is_root())
      log::info("eval: ", name, ": FVD ", fvd, res.contains("fidelity") ? cat(", caption fidelity ", res["fidelity"]["accuracy"].dump()) : "",
                res.contains("frame_quality") ? cat(", frame quality ", res["frame_quality"].dump()) : "",
                res.contains("clip_score") ? cat(", CLIP score ", res["clip_score"]["mean"].get<double>()) : "");
  }
  json protocol{{"detector", detector_info},
                {"reference", {{"clips", n_real}, {"source", "prep video shards, decoded"}, {"prep_checksum", info.checksum}}},
                {"frames", real.size(1)}, {"height", real.size(2)}, {"width", real.size(3)},
                {"features", dim}, {"covariance", "population (divided by N)"}, {"seed", cfg.run.seed},
                {"world_size", ctx.world_size()}};
  if (frame_det)
    protocol["frame_quality"] = {{"detector", frame_info}, {"features", fdim},
                                 {"stills", {{"count", stills.size(0)}, {"source", "prep image shards, decoded"},
                                             {"prep_checksum", image_info->checksum}}},
                                 {"frames", "every frame of every clip"},
                                 {"rules", "eval/frame_quality.cpp Note [frame quality rules]"},
                                 {"reference", reference_quality}};
  if (clip) protocol["clip_score"] = clip->protocol();
  json metrics{{"protocol", protocol}, {"jobs", results}};
  if (ctx.is_root()) {
    fs::write_atomic(out / "metrics.json", metrics.dump(1) + "\n");
    stage.record_output(out / "metrics.json", json::object({{"kind", "metrics"}}));
  }
  json fields = json::object();
  for (auto& [name, r] : results.items()) fields["fvd"][name] = r["fvd"];
  fields["detector"] = detector_info;
  if (frame_det) fields["frame_detector"] = frame_info;
  return stage.finish({}, fields) ? 0 : 1;
}

MCM_STAGE("eval", 60, run_eval, "FVD, caption fidelity, CLIP score and frame quality of the sampled methods");

}  // namespace mcm::stages
