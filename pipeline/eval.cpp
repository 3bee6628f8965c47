// `mcm eval`: metrics of every file `mcm sample` wrote (sample/samples.json). FVD against prep's
// clips decoded by the autoencoder (the reference set), with StyleGAN-V's I3D TorchScript when
// eval.detector names one, else the embedded detector trained on the run's own clips
// (eval/synth_detector.hpp), through the same Fréchet code; and, for synthetic-world prompts, the
// caption-fidelity analyser's colour, shape and direction accuracies with their p-values. Ranks
// split the clips; feature moments are float64 sums gathered from every rank and added in rank
// order. Writes eval/metrics.json with the protocol beside the numbers.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <functional>
#include <memory>

#include "core/checksum.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "eval/caption_fidelity.hpp"
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

constexpr const char* kEvalCodeVersion = "1";
MCM_CONFIG_SECTION(EvalSection);

// Every rank's float64 moment sums, added in rank order (the same on every rank).
eval::FeatureStats gather(const eval::FeatureStats& mine, int64_t dim, const dist::DistContext& ctx) {
  std::string bytes;
  if (mine.count > 0) {
    auto f = mine.flat().contiguous();
    bytes.assign(reinterpret_cast<const char*>(f.data_ptr<double>()), static_cast<size_t>(f.numel()) * sizeof(double));
  }
  torch::Tensor total;
  for (const auto& part : ctx.allgather(bytes)) {
    if (part.empty()) continue;
    auto t = torch::from_blob(const_cast<char*>(part.data()), {static_cast<int64_t>(part.size() / sizeof(double))},
                              torch::kFloat64).clone();
    total = total.defined() ? total + t : t;
  }
  require<DataError>(total.defined(), "eval: no features on any rank");
  return eval::FeatureStats::from_flat(total, dim);
}

// Prep's first `limit` clips (shard order), decoded to uint8 [N, T, H, W, 3], with captions.
torch::Tensor real_clips(const ShardInfo& info, int64_t limit, models::FrameAutoencoder& ae, std::vector<std::string>& captions) {
  std::vector<torch::Tensor> lat;
  for (const auto& shard : info.shards) {
    io::LatentShardReader r(shard);
    auto caps = r.strings("caption");
    for (hsize_t i = 0; i < r.size() && static_cast<int64_t>(lat.size()) < limit; ++i) {
      auto half = r.latent(i);
      lat.push_back(torch::from_blob(half.data(), info.latent, torch::kFloat16).to(torch::kFloat32).clone());
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

// Features of rows rank, rank + world, ... of `n` clips given by `row(i)` (uint8 [T, H, W, 3]).
eval::FeatureStats my_stats(eval::VideoDetector& det, int64_t n, const std::function<torch::Tensor(int64_t)>& row,
                            int64_t batch, const dist::DistContext& ctx) {
  eval::FeatureStats s;
  std::vector<torch::Tensor> buf;
  auto flush = [&] {
    if (!buf.empty()) s.add(det.features(torch::stack(buf)));
    buf.clear();
  };
  for (int64_t i = ctx.rank(); i < n; i += ctx.world_size()) {
    buf.push_back(row(i));
    if (static_cast<int64_t>(buf.size()) == batch) flush();
  }
  flush();
  return s;
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
  StageRun stage("eval", kEvalCodeVersion, cfg, ctx, {"eval", "models", "run.seed"});
  if (ctx.is_root()) fs::make_dirs(out);
  ctx.barrier();

  auto ae = models::make_autoencoder(cfg.models.autoencoder);
  ae->place(device, torch::kFloat32);
  std::vector<std::string> real_captions;
  auto real = real_clips(info, ec.real_clips, *ae, real_captions);
  const int64_t n_real = real.size(0);

  // The detector: a TorchScript I3D, or the embedded one trained by rank 0 on the real clips.
  std::unique_ptr<eval::VideoDetector> det;
  json detector_info;
  if (!ec.detector.empty()) {
    det = eval::load_torchscript_detector(ec.detector, device);
    detector_info = {{"kind", "torchscript"}, {"file", ec.detector}};
  } else {
    const stdfs::path weights = out / "detector.safetensors";
    std::vector<eval::SynthLabels> labels;
    for (const auto& c : real_captions) {
      try {
        labels.push_back(eval::synth_labels(c));
      } catch (const DataError& e) {
        throw ConfigError(cat("eval: the embedded detector learns the synthetic world's attributes, but ", e.what(),
                              " (prep's clips); set eval.detector to an I3D TorchScript file (StyleGAN-V's i3d_torchscript.pt)"));
      }
    }
    eval::SynthTrainOptions so;
    so.steps = ec.detector_steps;
    so.seed = static_cast<uint64_t>(cfg.run.seed);
    std::string acc_text;
    if (ctx.is_root()) {
      std::vector<double> acc;
      auto net = eval::train_synth_net(real, labels, so, &acc);
      models::write_tensors(weights, models::state_dict(*net));
      stage.record_output(weights, {{"kind", "detector"}, {"input", {{"path", (run_dir / "prep").string()}, {"kind", "set"},
                                                                    {"checksum", info.checksum}}}});
      acc_text = json(acc).dump();
      log::info("eval: embedded detector trained on ", n_real, " clips, training accuracy (shape, colour, direction, speed) ",
                acc_text);
    }
    acc_text = ctx.broadcast(acc_text);
    eval::SynthNet net(so.width);
    models::load_strict(*net, models::read_tensors(weights), weights.string());
    det = eval::synth_detector(net, checksum::of_file(weights));
    detector_info = {{"kind", "embedded synth-video-net"}, {"file", stdfs::relative(weights, run_dir).string()},
                     {"steps", so.steps}, {"training_accuracy", json::parse(acc_text)}};
  }
  detector_info["name"] = det->name();
  detector_info["checksum"] = det->checksum();

  const int64_t dim = det->features(real.slice(0, 0, 1)).size(1);
  auto real_stats = gather(my_stats(*det, n_real, [&](int64_t i) { return real[i]; }, ec.batch, ctx), dim, ctx);

  json results = json::object();
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
    auto stats = gather(my_stats(*det, n, row, ec.batch, ctx), dim, ctx);
    const double fvd = eval::frechet_distance(stats, real_stats, cat(name, " vs the reference clips"));
    // Caption fidelity of synthetic-world prompts: per-row analyses gathered, scored in row order.
    json mine = json::array();
    for (int64_t i = ctx.rank(); i < n; i += ctx.world_size()) {
      const auto prompt = r.prompt(static_cast<hsize_t>(i));
      eval::ClipAttributes want;
      try {
        want = eval::parse_caption(prompt);
      } catch (const Error&) {
        continue;  // not a synthetic-world caption: no ground truth to score against
      }
      auto v = r.video(static_cast<hsize_t>(i));
      auto a = eval::analyse_clip(v.data(), static_cast<int>(shape[0]), static_cast<int>(shape[2]), static_cast<int>(shape[1]));
      mine.push_back({{"index", i}, {"prompt", prompt}, {"colour", a.found.colour}, {"shape", a.found.shape},
                      {"direction", a.found.direction}});
    }
    const json fid = gather_fidelity(mine, ctx);
    const bool scored = !fid["per_prompt"].empty();
    json res{{"file", job.at("file")}, {"method", job.value("method", "")}, {"steps", job.value("steps", 0)}, {"samples", n},
             {"fvd", fvd}};
    if (scored) res["fidelity"] = fid["score"];
    results[name] = res;
    if (ctx.is_root())
      log::info("eval: ", name, ": FVD ", fvd, scored ? cat(", caption fidelity ", res["fidelity"]["accuracy"].dump()) : std::string());
  }
  json metrics{{"protocol", {{"detector", detector_info}, {"reference", {{"clips", n_real}, {"source", "prep video shards, decoded"},
                                                                        {"prep_checksum", info.checksum}}},
                             {"frames", real.size(1)}, {"height", real.size(2)}, {"width", real.size(3)},
                             {"features", dim}, {"covariance", "population (divided by N)"}, {"seed", cfg.run.seed},
                             {"world_size", ctx.world_size()}}},
               {"jobs", results}};
  if (ctx.is_root()) {
    fs::write_atomic(out / "metrics.json", metrics.dump(1) + "\n");
    stage.record_output(out / "metrics.json", json::object({{"kind", "metrics"}}));
  }
  json fields = json::object();
  for (auto& [name, r] : results.items()) fields["fvd"][name] = r["fvd"];
  fields["detector"] = detector_info;
  return stage.finish({}, fields) ? 0 : 1;
}

MCM_STAGE("eval", 60, run_eval, "FVD and caption fidelity of the sampled methods against the reference clips");

}  // namespace mcm::stages
