// bench/unet_step: forward and forward+backward time, peak GPU memory and output agreement of our
// UNet3DConditionModel (ModelScope) or UNetMotionModel (AnimateDiff: SD1.5 + a motion adapter)
// against diffusers' on the same torch, same weights, same inputs, same threads, in one run.
//
//   build/bench/unet_step --size tiny|modelscope|animatediff_tiny|animatediff [--unet DIR] [--device cpu|cuda]
//                         [--dtype fp32|bf16] [--frames F] [--res R] [--batch B] [--text-len L] [--reps N]
//                         [--threads T] [--rounds R] [--work DIR] [--python .venv/bin/python] [--json out.json]
//
// --unet takes the configuration from a diffusers unet/ folder's config.json instead of --size
// (e.g. a teacher run's teacher/unet: the model `mcm teacher` trains; its weights are not used).
// The weights are random (seeded), written with the inputs to --work (a diffusers folder), and
// diffusers loads that folder: both sides compute with the same numbers, and the table gives the
// largest difference of the eval-mode outputs relative to the largest output.
//
// The diffusers side runs bench/unet_step_diffusers.py in a child process (so the two never share
// a process, a thread pool or a CUDA caching allocator). The two sides alternate for `rounds`
// rounds, so drift in the machine's speed hits both; each round reports the median of `reps`
// steps, and the table shows the median over rounds. On CUDA each side reports the peak memory
// its allocator held for each kind of step (torch.cuda.max_memory_allocated). Prints a table,
// writes JSON.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <unistd.h>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "bench_util.hpp"
#include "models/unet3d.hpp"
#include "models/unet_motion.hpp"
#include "models/video_unet.hpp"
#include "models/weights.hpp"
#include "train/memory.hpp"

using namespace mcm;
using Clock = std::chrono::steady_clock;

using mcm::bench::median;

namespace {

struct Args {
  std::string size = "tiny", unet = "", device = "cpu", dtype = "fp32", python = ".venv/bin/python", json = "",
              work = "";
  int64_t frames = 8, res = 16, batch = 2, text_len = 77, reps = 10, threads = 2, rounds = 3;
};

// The diffusers config.json of the benchmarked UNet.
nlohmann::json config_for(const std::string& size, const std::string& unet) {
  if (!unet.empty()) return models::read_config_json(unet);
  if (size == "modelscope") return models::Unet3DConfig{}.to_json();  // defaults are ModelScopeT2V's
  if (size == "animatediff") return models::UnetMotionConfig::sd15_v152().to_json();
  require<ConfigError>(size == "tiny" || size == "animatediff_tiny",
                       "--size must be tiny, modelscope, animatediff_tiny or animatediff, got ", size);
  if (size == "animatediff_tiny") {  // SD1.5's layout (4 levels, 2 layers) at a fifth of the width
    auto c = models::UnetMotionConfig::sd15_v152();
    c.block_out_channels = {64, 128, 256, 256};
    c.cross_attention_dim = 128;
    return c.to_json();
  }
  models::Unet3DConfig c;
  c.down_block_types = {"CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"};
  c.up_block_types = {"UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"};
  c.block_out_channels = {64, 128, 128};
  c.layers_per_block = 1;
  c.norm_num_groups = 32;
  c.cross_attention_dim = 128;
  c.attention_head_dim = 32;
  return c.to_json();
}

}  // namespace

int main(int argc, char** argv) try {
  Args a;
  if (argc % 2 == 0) {
    std::fprintf(stderr, "unet_step: options come in pairs (--name value); %s has no value\n", argv[argc - 1]);
    return 2;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--size") a.size = v;
    else if (k == "--unet") a.unet = v;
    else if (k == "--device") a.device = v;
    else if (k == "--dtype") a.dtype = v;
    else if (k == "--frames") a.frames = std::stoll(v);
    else if (k == "--res") a.res = std::stoll(v);
    else if (k == "--batch") a.batch = std::stoll(v);
    else if (k == "--text-len") a.text_len = std::stoll(v);
    else if (k == "--reps") a.reps = std::stoll(v);
    else if (k == "--threads") a.threads = std::stoll(v);
    else if (k == "--rounds") a.rounds = std::stoll(v);
    else if (k == "--python") a.python = v;
    else if (k == "--json") a.json = v;
    else if (k == "--work") a.work = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  {
    namespace stdfs = std::filesystem;
    torch::set_num_threads(static_cast<int>(a.threads));
    torch::manual_seed(0);
    const auto cfg_json = config_for(a.size, a.unet);
    const torch::Device dev(a.device == "cuda" ? torch::kCUDA : torch::kCPU);
    const auto dtype = a.dtype == "bf16" ? torch::kBFloat16 : torch::kFloat32;
    auto unet = models::build_video_unet(cfg_json, a.unet.empty() ? a.size : a.unet + "/config.json");
    const auto shape = unet->shape();
    const std::string cls = unet->config_json().value("_class_name", "");
    // Random weights, perturbed so that no zero-initialised layer (output convs, LoRA-free
    // motion projections) hides a difference, in the benchmark's dtype, written for diffusers.
    {
      torch::NoGradGuard ng;
      for (auto& p : unet->parameters()) p.add_(torch::randn_like(p) * 0.02);
    }
    unet->to(dtype);
    const stdfs::path work = a.work.empty() ? stdfs::temp_directory_path() / cat("unet_step_", ::getpid()) : stdfs::path(a.work);
    stdfs::create_directories(work);
    models::save_video_unet(*unet, work / "unet");
    unet->to(dev);
    int64_t params = 0;
    for (auto& p : unet->parameters()) params += p.numel();
    auto opts = torch::TensorOptions().device(dev).dtype(dtype);
    auto x = torch::randn({a.batch, shape.in_channels, a.frames, a.res, a.res}, opts);
    auto t = torch::full({a.batch}, 500, torch::TensorOptions().device(dev).dtype(torch::kInt64));
    auto ctx = torch::randn({a.batch, a.text_len, shape.cross_attention_dim}, opts);
    models::write_tensors(work / "inputs.safetensors", {{"x", x.cpu()}, {"t", t.cpu()}, {"ctx", ctx.cpu()}});
    torch::Tensor ours_out;
    {
      unet->eval();
      torch::NoGradGuard ng;
      ours_out = unet->forward(x, t, ctx).to(torch::kFloat32).cpu();
    }
    auto sync = [&] {
      if (dev.is_cuda()) torch::cuda::synchronize();
    };
    // Forward rows run in eval mode (no dropout), like a sampler: under no_grad as diffusers'
    // pipelines, and under InferenceMode as our sampler. Forward+backward runs in train mode.
    enum Mode { NoGrad, Inference, Train };
    std::map<Mode, double> peak;
    auto time_it = [&](Mode mode) {
      std::vector<double> ms;
      unet->train(mode == Train);
      train::reset_cuda_peak_memory(dev);
      for (int64_t r = 0; r < a.reps + 2; ++r) {
        unet->zero_grad();
        sync();
        auto t0 = Clock::now();
        if (mode == Train) {
          unet->forward(x, t, ctx).to(torch::kFloat32).square().mean().backward();
        } else if (mode == NoGrad) {
          torch::NoGradGuard ng;
          unet->forward(x, t, ctx);
        } else {
          c10::InferenceMode im;
          unet->forward(x, t, ctx);
        }
        sync();
        if (r >= 2) ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
      peak[mode] = train::cuda_peak_memory(dev).allocated_gib;
      return median(ms);
    };
    std::ostringstream cmd;
    cmd << a.python << " " << MCM_SOURCE_DIR << "/bench/unet_step_diffusers.py --weights " << (work / "unet").string()
        << " --inputs " << (work / "inputs.safetensors").string() << " --output " << (work / "diffusers_out.safetensors").string()
        << " --device " << a.device << " --dtype " << a.dtype << " --reps " << a.reps << " --threads " << a.threads;
    std::vector<double> of, oi, ob, rf, rb;
    nlohmann::json ref;
    for (int64_t round = 0; round < a.rounds; ++round) {
      of.push_back(time_it(NoGrad));
      oi.push_back(time_it(Inference));
      ob.push_back(time_it(Train));
      ref = bench::run_json(cmd.str());
      rf.push_back(ref["forward_ms"]);
      rb.push_back(ref["forward_backward_ms"]);
      require<Error>(ref["params"].get<int64_t>() == params, "parameter counts differ: ours ", params, ", diffusers ",
                     ref["params"].get<int64_t>());
    }
    const auto theirs = models::read_tensors(work / "diffusers_out.safetensors").at("out").to(torch::kFloat32);
    const double scale = theirs.abs().max().item<double>();
    const double max_diff = (ours_out - theirs).abs().max().item<double>();
    const double ours_fwd = median(of), ours_inf = median(oi), ours_fb = median(ob), ref_fwd = median(rf),
                 ref_fb = median(rb);
    if (a.work.empty()) fs::remove_tree(work);  // not std::filesystem::remove_all: libtorch exports a broken copy

    std::printf("%s %s (%.1fM params), x=[%lld,%lld,%lld,%lld,%lld], text [%lld,%lld,%lld], %s %s, %lld threads, "
                "median of %lld rounds x %lld steps\n",
                cls.c_str(), a.unet.empty() ? a.size.c_str() : a.unet.c_str(), params / 1e6, (long long)a.batch,
                (long long)shape.in_channels, (long long)a.frames, (long long)a.res, (long long)a.res, (long long)a.batch,
                (long long)a.text_len, (long long)shape.cross_attention_dim, a.device.c_str(), a.dtype.c_str(),
                (long long)a.threads, (long long)a.rounds, (long long)a.reps);
    std::printf("%-30s %12s %12s %9s\n", "", "mcm (ms)", "diffusers", "speedup");
    std::printf("%-30s %12.1f %12.1f %8.2fx\n", "forward (no_grad, both)", ours_fwd, ref_fwd, ref_fwd / ours_fwd);
    std::printf("%-30s %12.1f %12.1f %8.2fx\n", "forward (ours InferenceMode)", ours_inf, ref_fwd, ref_fwd / ours_inf);
    std::printf("%-30s %12.1f %12.1f %8.2fx\n", "forward+backward (train)", ours_fb, ref_fb, ref_fb / ours_fb);
    if (dev.is_cuda()) {
      std::printf("%-30s %12.2f %12.2f\n", "peak GiB, forward (no_grad)", peak[NoGrad], ref.value("forward_peak_gib", 0.0));
      std::printf("%-30s %12.2f %12.2f\n", "peak GiB, forward+backward", peak[Train],
                  ref.value("forward_backward_peak_gib", 0.0));
    }
    std::printf("output agreement (eval, %s): max |ours - diffusers| = %.3g, relative to max |out| = %.3g\n",
                a.dtype.c_str(), max_diff, max_diff / scale);
    nlohmann::json j = {{"bench", "unet_step"}, {"class", cls}, {"size", a.size}, {"unet", a.unet},
                        {"text_len", a.text_len}, {"device", a.device}, {"dtype", a.dtype}, {"batch", a.batch},
                        {"frames", a.frames}, {"res", a.res}, {"threads", a.threads}, {"reps", a.reps},
                        {"rounds", a.rounds}, {"params", params},
                        {"output_max_abs_diff", max_diff}, {"output_max_abs", scale},
                        {"mcm", {{"forward_ms", ours_fwd}, {"forward_inference_mode_ms", ours_inf},
                                 {"forward_backward_ms", ours_fb}, {"rounds_forward_inference_mode_ms", oi},
                                 {"rounds_forward_ms", of}, {"rounds_forward_backward_ms", ob},
                                 {"forward_peak_gib", peak[NoGrad]}, {"forward_backward_peak_gib", peak[Train]}}},
                        {"diffusers", {{"forward_ms", ref_fwd}, {"forward_backward_ms", ref_fb},
                                       {"rounds_forward_ms", rf}, {"rounds_forward_backward_ms", rb},
                                       {"forward_peak_gib", ref.value("forward_peak_gib", 0.0)},
                                       {"forward_backward_peak_gib", ref.value("forward_backward_peak_gib", 0.0)}}},
                        {"torch", ref.value("torch", "")}};
    if (!a.json.empty()) std::ofstream(a.json) << j.dump(2) << "\n";
    return 0;
  }
} catch (const std::exception& e) {
  std::fprintf(stderr, "unet_step: %s\n", e.what());
  return 1;
}
