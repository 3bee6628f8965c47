// Evaluation throughput, ours against the same work in PyTorch on the same torch and threads:
//   - the embedded FVD detector (eval/synth_detector.hpp): clips per second of uint8 clips to
//     features, batches of --batch;
//   - the teacher's sampler (DDIM with classifier-free guidance at --steps, the run's real
//     teacher and scheduler): clips per second, prompts batched --sample-batch at a time, cond and
//     uncond in one forward as both sides do.
// The PyTorch side (bench/eval_throughput.py) loads the same detector weights into the same
// network in Python and the same teacher into diffusers' UNet3DConditionModel with diffusers'
// DDIMScheduler, which is what a PyTorch user would write. Needs a finished run's teacher and
// eval/detector.safetensors (bench/eval_throughput.sh makes one when missing).
//   build/bench/eval_throughput --run RUN [--threads 2] [--device cpu|cuda] [--json FILE]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"
#include "bench_util.hpp"
#include "eval/synth_detector.hpp"
#include "models/unet3d.hpp"
#include "models/weights.hpp"
#include "pipeline/teacher_fidelity.hpp"
#include "pipeline/teacher_model.hpp"

using namespace mcm;
using Clock = std::chrono::steady_clock;

using mcm::bench::median;

namespace {

struct Args {
  std::string run, device = "cpu", python = ".venv/bin/python", json;
  int64_t threads = 2, clips = 256, batch = 16, sample_clips = 16, sample_batch = 8, steps = 4, text_len = 16, rounds = 3;
};


}  // namespace

int main(int argc, char** argv) try {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--run") a.run = v;
    else if (k == "--device") a.device = v;
    else if (k == "--python") a.python = v;
    else if (k == "--json") a.json = v;
    else if (k == "--threads") a.threads = std::stoll(v);
    else if (k == "--clips") a.clips = std::stoll(v);
    else if (k == "--batch") a.batch = std::stoll(v);
    else if (k == "--sample-clips") a.sample_clips = std::stoll(v);
    else if (k == "--sample-batch") a.sample_batch = std::stoll(v);
    else if (k == "--steps") a.steps = std::stoll(v);
    else if (k == "--rounds") a.rounds = std::stoll(v);
    else throw ConfigError(cat("eval_throughput: unknown option ", k));
  }
  require<ConfigError>(!a.run.empty() && argc % 2 == 1, "usage: eval_throughput --run RUN [--threads N] [--device cpu|cuda] [--json FILE]");
  torch::set_num_threads(static_cast<int>(a.threads));
  const torch::Device dev(a.device == "cuda" ? torch::kCUDA : torch::kCPU);
  auto sync = [&] {
    if (dev.is_cuda()) torch::cuda::synchronize();
  };
  const std::string weights = a.run + "/eval/detector.safetensors", unet_dir = a.run + "/teacher/unet";
  const auto teacher = stages::teacher_from_folder(unet_dir, "eval_throughput");
  auto unet = models::load_unet3d(teacher.unet);
  unet->to(dev);
  unet->eval();
  const auto ucfg = unet->config();
  eval::SynthNet net;
  models::load_strict(*net, models::read_tensors(weights), weights);
  net->to(dev);
  auto det = eval::synth_detector(net, "bench");

  // The clips' shape: the teacher's latent grid decoded by the pixel-shuffle autoencoder (x2).
  const int64_t T = 8, H = 16, W = 16;
  torch::manual_seed(0);
  auto clips = torch::randint(0, 256, {a.clips, T, H, W, 3}, torch::kUInt8);
  auto feat_round = [&] {
    sync();
    auto t0 = Clock::now();
    for (int64_t b = 0; b < a.clips; b += a.batch) det->features(clips.slice(0, b, std::min(a.clips, b + a.batch)).to(dev));
    sync();
    return static_cast<double>(a.clips) / std::chrono::duration<double>(Clock::now() - t0).count();
  };
  const diffusion::NoiseSchedule schedule(teacher.schedule);
  auto ddim = stages::teacher_ddim(teacher.prediction, teacher.schedule.rescale_zero_terminal_snr);
  auto x = torch::randn({a.sample_batch, ucfg.in_channels, T, H / 2, W / 2}, torch::TensorOptions().device(dev));
  auto cond = torch::randn({a.sample_batch, a.text_len, ucfg.cross_attention_dim}, torch::TensorOptions().device(dev));
  auto uncond = torch::randn({1, a.text_len, ucfg.cross_attention_dim}, torch::TensorOptions().device(dev));
  auto sample_round = [&] {
    sync();
    auto t0 = Clock::now();
    for (int64_t b = 0; b < a.sample_clips; b += a.sample_batch)
      stages::sample_ddim_cfg(unet.ptr(), schedule, x, cond, uncond, 5.0, a.steps, ddim);
    sync();
    return static_cast<double>(a.sample_clips) / std::chrono::duration<double>(Clock::now() - t0).count();
  };
  feat_round();  // warm-up
  sample_round();
  std::ostringstream cmd;
  cmd << a.python << " " << MCM_SOURCE_DIR << "/bench/eval_throughput.py --run " << a.run << " --device " << a.device
      << " --threads " << a.threads << " --clips " << a.clips << " --batch " << a.batch << " --sample-clips " << a.sample_clips
      << " --sample-batch " << a.sample_batch << " --steps " << a.steps << " --text-len " << a.text_len;
  std::vector<double> of, os, rf, rs;
  nlohmann::json ref;
  for (int64_t r = 0; r < a.rounds; ++r) {
    of.push_back(feat_round());
    os.push_back(sample_round());
    ref = bench::run_json(cmd.str());
    rf.push_back(ref["features_clips_per_s"]);
    rs.push_back(ref["sampler_clips_per_s"]);
  }
  std::printf("eval throughput, %s, %lld threads, median of %lld rounds; clips [%lld, %lld, %lld, 3]\n", a.device.c_str(),
              (long long)a.threads, (long long)a.rounds, (long long)T, (long long)H, (long long)W);
  std::printf("%-44s %12s %12s %9s\n", "clips per second", "mcm", "PyTorch", "ratio");
  std::printf("%-44s %12.1f %12.1f %8.2fx\n", cat("embedded FVD detector (batch ", a.batch, ")").c_str(), median(of), median(rf),
              median(of) / median(rf));
  std::printf("%-44s %12.2f %12.2f %8.2fx\n", cat("teacher DDIM + CFG, ", a.steps, " steps (batch ", a.sample_batch, ")").c_str(),
              median(os), median(rs), median(os) / median(rs));
  nlohmann::json j{{"bench", "eval_throughput"}, {"device", a.device}, {"threads", a.threads}, {"rounds", a.rounds},
                   {"run", a.run}, {"clip_shape", {T, H, W, 3}}, {"detector_batch", a.batch}, {"sampler_batch", a.sample_batch},
                   {"sampler_steps", a.steps},
                   {"mcm", {{"features_clips_per_s", median(of)}, {"sampler_clips_per_s", median(os)}, {"rounds_features", of},
                            {"rounds_sampler", os}}},
                   {"pytorch", {{"features_clips_per_s", median(rf)}, {"sampler_clips_per_s", median(rs)}, {"rounds_features", rf},
                                {"rounds_sampler", rs}, {"torch", ref.value("torch", "")}, {"diffusers", ref.value("diffusers", "")}}}};
  if (!a.json.empty()) std::ofstream(a.json) << j.dump(2) << "\n";
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "eval_throughput: %s\n", e.what());
  return 1;
}
