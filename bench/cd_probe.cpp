// Consistency probe: how far a distilled student is from what consistency distillation asks of it.
//
// For N held-out prompts (distill's own list), the teacher's guided DDIM ODE over the distillation
// grid, from x_T, with distill's target guidance x0_c + w (x0_c - x0_u) at one fixed w: the point
// x_t at every grid timestep and the trajectory's end z (x_s at s = 0, distill's target there).
// Then, per grid timestep and per network f (stages::consistency, the function distill trains):
//   - flow-map error RMS(f(x_t, t) - z): what a perfect consistency student reaches (0), and what
//     the LCM sampler needs at its timesteps;
//   - consistency error RMS(f(x_t, t) - f(x_s, s)) with s one grid step below (at s = 0: x_s): what
//     L_CD drives down;
//   - the guidance gap RMS(x0_c - x0_u) of the teacher, on the trajectory and on forward-noised
//     training clips (where distillation draws its x_t): what the guided target adds there;
//   - train_consistency: the same consistency error on forward-noised training clips (x_s from
//     the guided step, the target from the same network): L_CD's own terms, what training lowers;
//   - dependence RMS(f(x_t, t) - f(x_t', t)), x_t' the next prompt's trajectory point under this
//     prompt's caption: how much the output depends on the noise at all (a network that ignores
//     x_t at t = 999, as an x0-predicting teacher at zero terminal SNR does, gives the same clip for
//     every seed of a caption in one step).
// Networks: the untrained student (the teacher's conditional prediction), the guided teacher's own
// one-step estimate x0_g (the guidance alone, no consistency), and every --student folder (a
// distilled student's merged diffusers unet/) and --checkpoint folder (distill/checkpoints/step-N: the
// adapters at step N, to follow a run over its training).
//   build/bench/cd_probe --config configs/tiny.toml [--config OVERLAY] [--set k=v] [--student DIR]... [--checkpoint DIR]...
//                        [--prompts 32] [--w 10] [--threads 2] [--json FILE]
// Errors are RMS over the decoded frames clamped to [-1, 1], what the samples show. The ODE's end
// clips are also scored by the caption-fidelity analyser (end_fidelity): the target's own quality.
// The guided step is distill's (stages::guided_step), with its guidance interval from the config.
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "diffusion/noise.hpp"
#include "diffusion/samplers.hpp"
#include "models/lora.hpp"
#include "models/video_unet.hpp"
#include "models/weights.hpp"
#include "diffusion/solver.hpp"
#include "dist/dist_context.hpp"
#include "models/encoders.hpp"
#include "pipeline/distill_config.hpp"
#include "pipeline/distill_model.hpp"
#include "pipeline/prep_shards.hpp"
#include "pipeline/teacher_fidelity.hpp"
#include "pipeline/teacher_model.hpp"

using namespace mcm;
using json = nlohmann::json;

namespace {

struct Args {
  std::vector<std::filesystem::path> configs;
  std::vector<std::string> sets, students, checkpoints;
  std::string json_out;
  int64_t prompts = 32, threads = 2;
  double w = 10.0;
};

double rms(const torch::Tensor& a) { return a.to(torch::kFloat64).pow(2).mean().sqrt().item<double>(); }

}  // namespace

int main(int argc, char** argv) try {
  dist::DistContext ctx(&argc, &argv);
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--config") a.configs.emplace_back(v);
    else if (k == "--set") a.sets.push_back(v);
    else if (k == "--student") a.students.push_back(v);
    else if (k == "--checkpoint") a.checkpoints.push_back(v);
    else if (k == "--json") a.json_out = v;
    else if (k == "--prompts") a.prompts = std::stoll(v);
    else if (k == "--threads") a.threads = std::stoll(v);
    else if (k == "--w") a.w = std::stod(v);
    else throw ConfigError(cat("cd_probe: unknown option ", k));
  }
  require<ConfigError>(!a.configs.empty() && argc % 2 == 1,
                       "usage: cd_probe --config FILE [--config OVERLAY] [--set k=v] [--student DIR]... "
                       "[--checkpoint DIR]... [--prompts N] [--w W] [--threads N] [--json FILE]");
  torch::set_num_threads(static_cast<int>(a.threads));
  torch::NoGradGuard ng;
  const auto cfg = config::load(a.configs, a.sets);
  const std::filesystem::path run_dir = cfg.run.dir;
  const auto seed = static_cast<uint64_t>(cfg.run.seed);
  const auto& dc = cfg.section<stages::DistillSection>();
  const auto info = stages::read_latent_shards(ctx, run_dir / "prep", "cd_probe");
  const auto src = stages::find_teacher(cfg, "cd_probe");
  const diffusion::NoiseSchedule schedule(src.schedule);
  const auto pred = src.prediction;
  auto teacher = stages::load_teacher_unet(src);
  auto text_encoder = models::make_text_encoder(cfg.models.text_encoder, run_dir);
  const auto prompts = stages::held_out_prompts(a.prompts, seed, info.captions);
  const int64_t N = static_cast<int64_t>(prompts.size());
  auto cond = text_encoder->encode(prompts);
  auto uncond = text_encoder->encode({""}).expand({N, cond.size(1), cond.size(2)});
  const int64_t T = schedule.num_train_timesteps(), n = dc.solver_steps;
  const auto grid = diffusion::ddim_solver_grid(T, n);  // ascending: 19, 39, ..., 999

  // x_T per prompt from distill's fidelity stream, so the probe sees the noise fidelity.json samples from.
  std::vector<rng::Key> keys;
  for (int64_t i = 0; i < N; ++i) keys.push_back(rng::key(seed, "teacher_eval", static_cast<uint64_t>(i), "noise"));
  auto x = diffusion::randn_per_sample(keys, info.latent, torch::TensorOptions().dtype(torch::kFloat32));

  // Every error is measured on what a sample shows: the decoded frames, clamped to [-1, 1] as the
  // samplers' videos are, so that latents the guidance pushes past that range do not count.
  auto autoencoder = models::make_autoencoder(cfg.models.autoencoder);
  auto pix = [&](const torch::Tensor& v) {
    const auto B = v.size(0), C = v.size(1), F = v.size(2);
    return autoencoder->decode(v.permute({0, 2, 1, 3, 4}).reshape({B * F, C, v.size(3), v.size(4)})).clamp(-1, 1);
  };
  auto ts = [&](int64_t t) { return torch::full({N}, t, torch::kInt64); };
  const auto co = stages::cd_options(dc, pred);  // distill's consistency function and target solver
  auto guided = [&](const torch::Tensor& xt, const torch::Tensor& t, const torch::Tensor& text, const torch::Tensor& un) {
    return stages::guided_step(teacher, schedule, co, xt, t, (t - T / n).clamp_min(0), text, un,
                               torch::full({xt.size(0)}, a.w, torch::kFloat32));
  };
  // The guided ODE, top to bottom: xs[i] is the point at grid[i]; x0g[i] the guided one-step estimate there.
  std::vector<torch::Tensor> xs(grid.size()), x0g(grid.size());
  std::vector<double> gap_generated(grid.size());  // RMS(x0_c - x0_u) on the trajectory
  for (int64_t i = static_cast<int64_t>(grid.size()) - 1; i >= 0; --i) {
    const auto t = ts(grid[static_cast<size_t>(i)]);
    xs[static_cast<size_t>(i)] = x;
    auto g = guided(x, t, cond, uncond);
    x0g[static_cast<size_t>(i)] = g.x0_g;
    gap_generated[static_cast<size_t>(i)] = rms(pix(g.x0_c) - pix(g.x0_u));
    x = g.x_s;
  }
  const auto z = pix(x);  // the end: distill's target at s = 0

  // The same gap where distillation trains: the first shard's clips (with their captions), noised
  // to each grid timestep by the forward process (pure noise at T - 1, as distill).
  json gap = json::array();
  std::vector<torch::Tensor> xt_real(grid.size()), xs_real(grid.size());  // x_t and the guided step's x_s
  torch::Tensor text_real;
  {
    auto clips = stages::read_shard_clips(info.shards.front(), info.latent, info.text, N);
    const auto& x0 = clips.latents;
    const auto& text = clips.text;
    const int64_t m = x0.size(0);
    std::vector<rng::Key> nk;
    for (int64_t j = 0; j < m; ++j) nk.push_back(rng::key(seed, "cd_probe", static_cast<uint64_t>(j), "real_noise"));
    auto eps = diffusion::randn_per_sample(nk, info.latent, torch::TensorOptions().dtype(torch::kFloat32));
    auto un = uncond.slice(0, 0, 1).expand({m, uncond.size(1), uncond.size(2)});
    for (size_t i = 0; i < grid.size(); ++i) {
      auto t = torch::full({m}, grid[i], torch::kInt64);
      auto xt = grid[i] == T - 1 ? eps : schedule.add_noise(x0, eps, t);
      auto g = guided(xt, t, text, un);
      gap.push_back({{"t", grid[i]}, {"generated", gap_generated[i]}, {"real", rms(pix(g.x0_c) - pix(g.x0_u))}});
      xt_real[i] = xt;
      xs_real[i] = g.x_s;
    }
    text_real = text;
  }

  auto f = [&](const models::VideoUnet& net, const torch::Tensor& xt, int64_t t, const torch::Tensor& c) {
    return stages::consistency(net, schedule, co, xt, torch::full({xt.size(0)}, t, torch::kInt64), c);
  };
  // The next prompt's noise under this prompt's caption: the same t, another x_t.
  auto shifted = [&](const torch::Tensor& v) { return torch::roll(v, {1}, {0}); };

  json out{{"w", a.w}, {"cfg_scale", a.w + 1}, {"guidance_t_min", co.guidance_t_min}, {"guidance_t_max", co.guidance_t_max},
           {"prompts", N}, {"solver_steps", n}, {"teacher", src.unet.string()},
           {"end_rms", rms(z)}, {"guidance_gap", gap},
           // What the student is asked to reproduce: the analyser's scores of the ODE's end clips.
           {"end_fidelity", stages::analyser_on_data(*autoencoder, x, prompts)}};
  // The untrained student's f per grid point: what each trained one moved from, and whether toward z.
  std::vector<torch::Tensor> base(grid.size());
  auto probe = [&](const std::string& name, const models::VideoUnet& net, bool is_base) {
    json rows = json::array();
    for (size_t i = 0; i < grid.size(); ++i) {
      auto ft = pix(f(net, xs[i], grid[i], cond));
      auto fs = i == 0 ? z : pix(f(net, xs[i - 1], grid[i - 1], cond));
      json r{{"t", grid[i]}, {"flow_map", rms(ft - z)}, {"consistency", rms(ft - fs)},
             {"dependence", rms(ft - pix(f(net, shifted(xs[i]), grid[i], cond)))}};
      {  // L_CD's own terms on training clips at this w (the online target, f(x_s) = x_s at s = 0)
        const int64_t s_t = i == 0 ? 0 : grid[i - 1];
        auto fr = pix(f(net, xt_real[i], grid[i], text_real));
        auto tr = i == 0 ? pix(xs_real[0]) : pix(f(net, xs_real[i], s_t, text_real));
        r["train_consistency"] = rms(fr - tr);
      }
      if (is_base) {
        base[i] = ft;
      } else {  // moved: RMS(f - f_untrained); toward: cosine of that move with z - f_untrained
        auto d = (ft - base[i]).to(torch::kFloat64).flatten(), g = (z - base[i]).to(torch::kFloat64).flatten();
        r["moved"] = rms(d);
        r["toward"] = (d.dot(g) / (d.norm() * g.norm() + 1e-30)).item<double>();
      }
      rows.push_back(r);
    }
    out["networks"][name] = rows;
  };
  {
    json rows = json::array();
    for (size_t i = 0; i < grid.size(); ++i) rows.push_back({{"t", grid[i]}, {"flow_map", rms(pix(x0g[i]) - z)}});
    out["networks"]["guided_teacher_x0"] = rows;
  }
  probe("untrained", teacher, true);
  for (const auto& s : a.students) {
    auto net = models::load_video_unet(s);
    net->eval();
    probe(s, net, false);
  }
  // A distill checkpoint: the teacher with distill's LoRA attached and the checkpoint's adapters loaded.
  for (const auto& c : a.checkpoints) {
    auto net = stages::load_teacher_unet(src);
    models::LoraConfig lc;
    lc.rank = dc.lora_rank;
    lc.alpha = dc.lora_alpha;
    models::attach_lora(*net, lc);
    const auto file = std::filesystem::path(c) / "model.safetensors";
    auto tensors = models::read_tensors(file);
    int64_t loaded = 0, adapters = 0;
    for (auto& p : net->named_parameters(true)) {
      if (p.key().find("lora_") == std::string::npos) continue;
      ++adapters;
      auto it = tensors.find(p.key());
      require<DataError>(it != tensors.end() && it->second.sizes() == p.value().sizes(), "cd_probe: ", file.string(),
                         " has no adapter ", p.key(), " of shape ", p.value().sizes(), " (distill.lora_rank = ", dc.lora_rank, "?)");
      p.value().copy_(it->second);
      ++loaded;
    }
    require<DataError>(loaded == adapters && loaded > 0, "cd_probe: ", file.string(), ": ", loaded, " of ", adapters, " adapters");
    net->eval();
    probe(c, net, false);
  }

  if (ctx.is_root()) {
    std::printf("cd_probe: %lld prompts, guidance w = %g (CFG %g), grid of %lld; RMS of the ODE's end %.4f (decoded, clamped)\n",
                static_cast<long long>(N), a.w, a.w + 1, static_cast<long long>(n), out["end_rms"].get<double>());
    std::printf("the ODE's end, caption fidelity (the target's own score): %s\n", out["end_fidelity"]["accuracy"].dump().c_str());
    std::printf("flow-map error RMS(f(x_t,t) - z) [consistency error to the next grid point] {dependence on x_t}\n");
    std::printf("%6s", "t");
    for (auto& [name, rows] : out["networks"].items()) std::printf(" | %-30.30s", name.c_str());
    std::printf("\n");
    for (int64_t t : {999, 899, 759, 599, 499, 379, 259, 159, 99, 59, 19}) {
      if ((t + 1) % (T / n) != 0) continue;
      const auto i = static_cast<size_t>((t + 1) / (T / n) - 1);
      std::printf("%6lld", static_cast<long long>(t));
      for (auto& [name, rows] : out["networks"].items()) {
        const auto& r = rows[i];
        char cell[64];
        if (r.contains("dependence"))
          std::snprintf(cell, sizeof cell, "%.4f [%.4f] {%.4f}", r["flow_map"].get<double>(),
                        r["consistency"].get<double>(), r["dependence"].get<double>());
        else
          std::snprintf(cell, sizeof cell, "%.4f", r["flow_map"].get<double>());
        std::printf(" | %-30s", cell);
      }
      std::printf("\n");
    }
    std::printf("guidance gap RMS(x0_c - x0_u): on the trajectory / on noised training clips\n");
    for (int64_t t : {999, 899, 759, 599, 499, 379, 259, 159, 99, 59, 19}) {
      if ((t + 1) % (T / n) != 0) continue;
      const auto& g = gap[static_cast<size_t>((t + 1) / (T / n) - 1)];
      std::printf("%6lld | %.4f / %.4f\n", static_cast<long long>(t), g["generated"].get<double>(), g["real"].get<double>());
    }
    std::printf("consistency error on noised training clips (what L_CD lowers)\n");
    for (int64_t t : {999, 899, 759, 599, 499, 379, 259, 159, 99, 59, 19}) {
      if ((t + 1) % (T / n) != 0) continue;
      const auto i = static_cast<size_t>((t + 1) / (T / n) - 1);
      std::printf("%6lld", static_cast<long long>(t));
      for (auto& [name, rows] : out["networks"].items())
        if (rows[i].contains("train_consistency")) std::printf(" | %.4f", rows[i]["train_consistency"].get<double>());
      std::printf("\n");
    }
    if (!a.students.empty() || !a.checkpoints.empty())
      std::printf("moved RMS(f - f_untrained) and its cosine with z - f_untrained\n");
    for (int64_t t : {999, 899, 759, 599, 499, 379, 259, 159, 99, 59, 19}) {
      const auto i = static_cast<size_t>((t + 1) / (T / n) - 1);
      if ((t + 1) % (T / n) != 0 || (a.students.empty() && a.checkpoints.empty())) continue;
      std::printf("%6lld", static_cast<long long>(t));
      for (auto& [name, rows] : out["networks"].items())
        if (rows[i].contains("moved"))
          std::printf(" | %.4f cos %+.3f", rows[i]["moved"].get<double>(), rows[i]["toward"].get<double>());
      std::printf("\n");
    }
    if (!a.json_out.empty()) std::ofstream(a.json_out) << out.dump(1) << "\n";
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "cd_probe: %s\n", e.what());
  return 1;
}
