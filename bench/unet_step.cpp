// bench/unet_step: forward and forward+backward time of our UNet3DConditionModel against
// diffusers' on the same torch, same configuration, same inputs, same threads, in one run.
//
//   build/bench/unet_step --size tiny|modelscope [--unet DIR] [--device cpu|cuda] [--dtype fp32|bf16]
//                         [--frames F] [--res R] [--batch B] [--text-len L] [--reps N] [--threads T]
//                         [--rounds R] [--python .venv/bin/python] [--json out.json]
//
// --unet takes the configuration from a diffusers unet/ folder's config.json instead of --size
// (e.g. a teacher run's teacher/unet: the model `mcm teacher` trains; its weights are not used).
//
// The diffusers side runs bench/unet_step_diffusers.py in a child process with the same
// arguments (so the two never share a process or a thread pool). The two sides alternate for
// `rounds` rounds, so drift in the machine's speed hits both; each round reports the median of
// `reps` steps, and the table shows the median over rounds. Prints a table, writes JSON.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "core/error.hpp"
#include "bench_util.hpp"
#include "models/unet3d.hpp"
#include "models/weights.hpp"

using namespace mcm;
using Clock = std::chrono::steady_clock;

using mcm::bench::median;

namespace {

struct Args {
  std::string size = "tiny", unet = "", device = "cpu", dtype = "fp32", python = ".venv/bin/python", json = "";
  int64_t frames = 8, res = 16, batch = 2, text_len = 77, reps = 10, threads = 2, rounds = 3;
};

models::Unet3DConfig config_for(const std::string& size, const std::string& unet) {
  if (!unet.empty()) return models::Unet3DConfig::from_json(models::read_config_json(unet), unet + "/config.json");
  models::Unet3DConfig c;  // defaults are ModelScopeT2V's unet/config.json
  if (size == "modelscope") return c;
  require<ConfigError>(size == "tiny", "--size must be tiny or modelscope, got ", size);
  c.down_block_types = {"CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"};
  c.up_block_types = {"UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"};
  c.block_out_channels = {64, 128, 128};
  c.layers_per_block = 1;
  c.norm_num_groups = 32;
  c.cross_attention_dim = 128;
  c.attention_head_dim = 32;
  return c;
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
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  {
    torch::set_num_threads(static_cast<int>(a.threads));
    torch::manual_seed(0);
    const auto cfg = config_for(a.size, a.unet);
    const torch::Device dev(a.device == "cuda" ? torch::kCUDA : torch::kCPU);
    const auto dtype = a.dtype == "bf16" ? torch::kBFloat16 : torch::kFloat32;
    models::Unet3D unet(cfg);
    unet->to(dev, dtype);
    int64_t params = 0;
    for (auto& p : unet->parameters()) params += p.numel();
    auto opts = torch::TensorOptions().device(dev).dtype(dtype);
    auto x = torch::randn({a.batch, cfg.in_channels, a.frames, a.res, a.res}, opts);
    auto t = torch::full({a.batch}, 500, torch::TensorOptions().device(dev).dtype(torch::kInt64));
    auto ctx = torch::randn({a.batch, a.text_len, cfg.cross_attention_dim}, opts);
    auto sync = [&] {
      if (dev.is_cuda()) torch::cuda::synchronize();
    };
    // Forward rows run in eval mode (no dropout), like a sampler: under no_grad as diffusers'
    // pipelines, and under InferenceMode as our sampler. Forward+backward runs in train mode.
    enum Mode { NoGrad, Inference, Train };
    auto time_it = [&](Mode mode) {
      std::vector<double> ms;
      unet->train(mode == Train);
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
      return median(ms);
    };
    std::ostringstream cmd;
    cmd << a.python << " " << MCM_SOURCE_DIR << "/bench/unet_step_diffusers.py --size " << a.size
        << (a.unet.empty() ? "" : " --unet " + a.unet) << " --device "
        << a.device << " --dtype " << a.dtype << " --frames " << a.frames << " --res " << a.res << " --batch "
        << a.batch << " --text-len " << a.text_len << " --reps " << a.reps << " --threads " << a.threads;
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
    const double ours_fwd = median(of), ours_inf = median(oi), ours_fb = median(ob), ref_fwd = median(rf),
                 ref_fb = median(rb);

    std::printf("UNet3D %s (%.1fM params), x=[%lld,%lld,%lld,%lld,%lld], text [%lld,%lld,%lld], %s %s, %lld threads, "
                "median of %lld rounds x %lld steps\n",
                a.unet.empty() ? a.size.c_str() : a.unet.c_str(), params / 1e6, (long long)a.batch,
                (long long)cfg.in_channels, (long long)a.frames, (long long)a.res, (long long)a.res, (long long)a.batch,
                (long long)a.text_len, (long long)cfg.cross_attention_dim, a.device.c_str(), a.dtype.c_str(), (long long)a.threads, (long long)a.rounds,
                (long long)a.reps);
    std::printf("%-26s %12s %12s %9s\n", "", "mcm (ms)", "diffusers", "speedup");
    std::printf("%-26s %12.1f %12.1f %8.2fx\n", "forward (no_grad, both)", ours_fwd, ref_fwd, ref_fwd / ours_fwd);
    std::printf("%-26s %12.1f %12.1f %8.2fx\n", "forward (ours InferenceMode)", ours_inf, ref_fwd, ref_fwd / ours_inf);
    std::printf("%-26s %12.1f %12.1f %8.2fx\n", "forward+backward (train)", ours_fb, ref_fb, ref_fb / ours_fb);
    nlohmann::json j = {{"bench", "unet_step"}, {"size", a.size}, {"unet", a.unet}, {"text_len", a.text_len}, {"device", a.device}, {"dtype", a.dtype},
                        {"batch", a.batch}, {"frames", a.frames}, {"res", a.res}, {"threads", a.threads},
                        {"reps", a.reps}, {"rounds", a.rounds}, {"params", params},
                        {"mcm", {{"forward_ms", ours_fwd}, {"forward_inference_mode_ms", ours_inf},
                                 {"forward_backward_ms", ours_fb}, {"rounds_forward_inference_mode_ms", oi},
                                 {"rounds_forward_ms", of}, {"rounds_forward_backward_ms", ob}}},
                        {"diffusers", {{"forward_ms", ref_fwd}, {"forward_backward_ms", ref_fb},
                                       {"rounds_forward_ms", rf}, {"rounds_forward_backward_ms", rb}}},
                        {"torch", ref.value("torch", "")}};
    if (!a.json.empty()) std::ofstream(a.json) << j.dump(2) << "\n";
    return 0;
  }
} catch (const std::exception& e) {
  std::fprintf(stderr, "unet_step: %s\n", e.what());
  return 1;
}
