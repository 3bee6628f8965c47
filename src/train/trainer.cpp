#include "train/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>

#include "core/build_info.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/progress.hpp"
#include "core/rng.hpp"
#include "core/signals.hpp"
#include "dist/reducer.hpp"
#include "models/weights.hpp"
#include "train/checkpoint.hpp"
#include "train/memory.hpp"

namespace mcm::train {
namespace stdfs = std::filesystem;
using json = nlohmann::json;

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The keys whose values differ between two flat identity objects, "key a -> b".
std::vector<std::string> differences(const json& was, const json& now) {
  std::vector<std::string> out;
  for (auto& [k, v] : now.items())
    if (!was.contains(k)) out.push_back(cat(k, " (new key) = ", v.dump()));
    else if (was[k] != v) out.push_back(cat(k, " ", was[k].dump(), " -> ", v.dump()));
  for (auto& [k, v] : was.items())
    if (!now.contains(k)) out.push_back(cat(k, " (no longer set) was ", v.dump()));
  return out;
}

// Keeps the metrics lines of steps <= `step` (a resumed run rewrites the steps after it).
void truncate_metrics(const stdfs::path& file, int64_t step) {
  std::string text;
  if (!fs::read_text_if_exists(file, text)) return;
  std::istringstream in(text);
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      auto j = json::parse(line);
      if (j.value("step", int64_t{0}) > step) continue;
    } catch (const json::exception&) {
      continue;  // a torn last line of a killed run
    }
    kept += line + "\n";
  }
  fs::write_atomic(file, kept);
}

// The default generator of a device (a shared handle: changes apply to the global one).
at::Generator default_generator(torch::Device device) { return at::globalContext().defaultGenerator(device); }

torch::Tensor generator_state(torch::Device device) { return default_generator(device).get_state().contiguous(); }
}  // namespace

void configure_torch(const TrainSection& engine, uint64_t seed, const std::string& stage, int rank, torch::Device device) {
  if (engine.deterministic) {
    // cuBLAS needs a fixed workspace for deterministic results; set before CUDA initialises.
    setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", 0);
    at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/false);
    at::globalContext().setDeterministicCuDNN(true);
    at::globalContext().setBenchmarkCuDNN(false);
  }
  // Training randomness comes from rng streams keyed by sample and step (world-size independent);
  // torch's own generators (dropout, if a model has it) are seeded per rank and checkpointed.
  const uint64_t s = rng::seed64(rng::key(seed, stage, static_cast<uint64_t>(rank), "torch_generator"));
  default_generator(torch::Device(torch::kCPU)).set_current_seed(s);
  if (device.is_cuda()) default_generator(device).set_current_seed(s);
}

Trainer::Trainer(TrainerSpec spec, const dist::DistContext& ctx, torch::Device device, LatentLoader& loader, LossFn loss)
    : spec_(std::move(spec)),
      ctx_(ctx),
      device_(device),
      loader_(loader),
      loss_(std::move(loss)),
      precision_(resolve_precision(spec_.engine, device.is_cuda())),
      scaler_(precision_ == "fp16") {
  require<ConfigError>(!(precision_ == "fp16" && !device.is_cuda()), spec_.stage,
                       ": train.precision = \"fp16\" needs a GPU (use \"bf16\" or \"fp32\" on the CPU)");
  require<ConfigError>(!spec_.params.empty(), spec_.stage, ": no trainable parameters");
  for (auto& [name, p] : spec_.params)
    require<ConfigError>(p.scalar_type() == torch::kFloat32, spec_.stage, ": trainable parameter ", name,
                         " is ", c10::toString(p.scalar_type()), "; master weights must be float32");
  dist::CommOptions copts;
  copts.timeout_s = spec_.engine.comm_timeout_s;
  copts.heartbeat_dir = spec_.dir / "heartbeat";
  if (ctx_.is_root()) fs::make_dirs(copts.heartbeat_dir);
  ctx_.barrier();
  comm_ = dist::make_communicator(ctx_, device_, copts);
  if (ctx_.world_size() > 1) {
    reducer_ = make_reducer(spec_.params);
    // The cost the reducer must hide: every gradient all-reduced alone, blocking (median of 3),
    // reported beside the exposed wait so metrics show the hidden share honestly.
    int64_t numel = 0;
    for (auto& [name, p] : spec_.params) numel += p.numel();
    auto flat = torch::zeros({numel}, torch::TensorOptions().dtype(torch::kFloat32).device(device_));
    std::vector<double> t;
    for (int i = 0; i < 3; ++i) {
      auto t0 = Clock::now();
      comm_->allreduce(flat, dist::ReduceOp::kAvg, "all-reduce timing");
      t.push_back(since(t0));
    }
    std::sort(t.begin(), t.end());
    allreduce_alone_s_ = t[1];
  }
  opt_ = std::make_unique<AdamW>(spec_.params, spec_.optim, spec_.engine.fused_optimizer);
  if (spec_.critic) {
    auto& c = *spec_.critic;
    require<ConfigError>(!c.params.empty() && c.loss, spec_.stage, ": ", c.name, ": no parameters or no loss");
    std::set<std::string> names;
    for (auto& [name, p] : spec_.params) names.insert(name);
    for (auto& [name, p] : c.params) {
      require<ConfigError>(names.insert(name).second, spec_.stage, ": ", c.name, " parameter ", name,
                           " has the name of another trainable parameter");
      require<ConfigError>(p.scalar_type() == torch::kFloat32, spec_.stage, ": ", c.name, " parameter ", name,
                           " is ", c10::toString(p.scalar_type()), "; master weights must be float32");
    }
    // Its schedule runs over the main steps; only the optimisation constants are its own.
    c.optim.steps = spec_.optim.steps;
    c.optim.batch = spec_.optim.batch;
    c.optim.micro_batch = spec_.optim.micro_batch;
    if (ctx_.world_size() > 1) critic_reducer_ = make_reducer(c.params);
    critic_opt_ = std::make_unique<AdamW>(c.params, c.optim, spec_.engine.fused_optimizer);
  }
  if (spec_.optim.ema_decay > 0) ema_ = std::make_unique<Ema>(spec_.params, spec_.optim.ema_decay);
}

Trainer::~Trainer() = default;

std::unique_ptr<dist::Reducer> Trainer::make_reducer(const NamedTensors& params) {
  dist::ReducerOptions ropts;
  ropts.bucket_mb = spec_.engine.bucket_mb;
  ropts.first_bucket_mb = spec_.engine.first_bucket_mb;
  std::vector<std::pair<std::string, at::Tensor>> named(params.begin(), params.end());
  return std::make_unique<dist::Reducer>(std::move(named), *comm_, ropts);
}

NamedTensors Trainer::all_params() const {
  NamedTensors all = spec_.params;
  if (spec_.critic) all.insert(all.end(), spec_.critic->params.begin(), spec_.critic->params.end());
  return all;
}

std::string Trainer::critic_optimizer_file() const { return cat("optimizer_", spec_.critic->name, ".safetensors"); }

json Trainer::side_loader_states() const {
  json out = json::array();
  for (auto* l : spec_.side_loaders) out.push_back(l->state());
  return out;
}

void Trainer::checkpoint(int64_t step) {
  auto write_root = [&](const stdfs::path& folder) {
    models::TensorMap model;
    for (auto& [name, p] : all_params()) model[name] = p.detach().cpu().contiguous();
    models::write_tensors(folder / "model.safetensors", model);
    models::write_tensors(folder / "optimizer.safetensors", opt_->state());
    if (critic_opt_) models::write_tensors(folder / critic_optimizer_file(), critic_opt_->state());
    if (ema_) models::write_tensors(folder / "ema.safetensors", ema_->state());
    if (!spec_.state.empty()) {
      models::TensorMap state;
      for (auto& [name, v] : spec_.state) state[name] = v.detach().cpu().contiguous();
      models::write_tensors(folder / "state.safetensors", state);
    }
    json t{{"stage", spec_.stage},
           {"step", step},
           {"optimizer_steps", opt_->steps_taken()},
           {"lr", lr_at(spec_.optim, std::max<int64_t>(0, step - 1))},
           {"loader", loader_.state()},
           {"side_loaders", side_loader_states()},
           {"skipped_steps", skipped_},
           {"bad_in_row", bad_in_row_},
           {"scaler", scaler_.state()},
           {"precision", precision_},
           {"world_size", ctx_.world_size()},
           {"global_batch", spec_.optim.batch},
           {"micro_batch", spec_.optim.micro_batch},
           {"identity", spec_.identity}};
    if (critic_opt_) t["critic_optimizer_steps"] = critic_opt_->steps_taken();
    fs::write_atomic(folder / "trainer.json", t.dump(1) + "\n");
  };
  auto write_rank = [&](const stdfs::path& folder) {
    models::TensorMap gens{{"cpu_generator", generator_state(torch::Device(torch::kCPU))}};
    if (device_.is_cuda()) gens["cuda_generator"] = generator_state(device_).cpu();
    models::write_tensors(folder / cat("rank", ctx_.rank(), ".safetensors"), gens);
  };
  auto done = save_checkpoint(checkpoints_dir(), step, *comm_, write_root, write_rank, spec_.engine.keep_checkpoints);
  if (ctx_.is_root()) {
    log::info(spec_.stage, ": checkpoint ", done.parent_path().string(), " (step ", step, ")");
    if (spec_.on_checkpoint) spec_.on_checkpoint(done, step);
  }
}

namespace {
// Copies the tensors of `file` into `dst` by name; every name must be there with its shape, and
// the file must hold nothing else (a KeyMismatch report naming the file otherwise).
void load_named(const stdfs::path& file, const NamedTensors& dst) {
  auto src = models::read_tensors(file);
  torch::NoGradGuard no_grad;
  models::KeyMismatch km;
  std::set<std::string> known;
  for (auto& [name, p] : dst) {
    known.insert(name);
    auto it = src.find(name);
    if (it == src.end()) km.missing.push_back(name);
    else if (it->second.sizes() != p.sizes()) km.add_misshaped(name, it->second.sizes(), p.sizes());
    else p.copy_(it->second);
  }
  for (auto& [k, v] : src)
    if (!known.count(k)) km.unexpected.push_back(k);
  km.throw_if_any(cat("checkpoint tensors ", file.string()));
}
}  // namespace

int64_t Trainer::resume() {
  // Rank 0 chooses (one listing of a possibly networked folder) and checks; all ranks load.
  std::string chosen, error;
  if (ctx_.is_root()) {
    for (auto& torn : torn_checkpoints(checkpoints_dir()))
      log::warn(spec_.stage, ": ignoring ", torn.string(), ": no DONE marker (a checkpoint write was interrupted)");
    auto complete = complete_checkpoints(checkpoints_dir());
    try {
      if (!complete.empty()) {
        const stdfs::path folder = complete.back();
        verify_checkpoint(folder);
        json t = json::parse(fs::read_text(folder / "trainer.json"));
        auto diff = differences(t.at("identity"), spec_.identity);
        if (!diff.empty()) {
          std::string list;
          for (auto& d : diff) list += (list.empty() ? "" : "; ") + d;
          throw ConfigError(cat(spec_.stage, ": checkpoint ", folder.string(), " was written with another config (", list,
                                "); restore those settings, or move ", checkpoints_dir().string(), " away to start over"));
        }
        const int64_t w = t.at("world_size").get<int64_t>();
        require<ConfigError>(w == ctx_.world_size(), spec_.stage, ": checkpoint ", folder.string(), " was written by ", w,
                             " rank(s) and holds per-rank generator states for ", w, "; this run has ",
                             ctx_.world_size(), " rank(s): resume with ", w, " rank(s)");
        chosen = folder.string();
      }
    } catch (const Error& e) {
      error = e.what();
    }
  }
  error = ctx_.broadcast(error);
  if (!error.empty()) throw ConfigError(error);
  chosen = ctx_.broadcast(chosen);
  if (chosen.empty()) return -1;

  const stdfs::path folder(chosen);
  json t = json::parse(fs::read_text(folder / "trainer.json"));
  load_named(folder / "model.safetensors", all_params());
  if (!spec_.state.empty()) load_named(folder / "state.safetensors", spec_.state);
  opt_->load_state(models::read_tensors(folder / "optimizer.safetensors"), t.at("optimizer_steps").get<int64_t>(),
                   (folder / "optimizer.safetensors").string());
  if (critic_opt_)
    critic_opt_->load_state(models::read_tensors(folder / critic_optimizer_file()),
                            t.at("critic_optimizer_steps").get<int64_t>(), (folder / critic_optimizer_file()).string());
  {
    const json side = t.value("side_loaders", json::array());
    require<ConfigError>(side.size() == spec_.side_loaders.size(), spec_.stage, ": checkpoint ", folder.string(), " holds ",
                         side.size(), " side loader position(s), this run has ", spec_.side_loaders.size());
    for (size_t i = 0; i < side.size(); ++i) spec_.side_loaders[i]->restore(side[i]);
  }
  if (ema_) ema_->load_state(models::read_tensors(folder / "ema.safetensors"), (folder / "ema.safetensors").string());
  scaler_.load_state(t.value("scaler", json()));
  loader_.restore(t.at("loader"));
  skipped_ = t.value("skipped_steps", int64_t{0});
  bad_in_row_ = t.value("bad_in_row", int64_t{0});
  auto gens = models::read_tensors(folder / cat("rank", ctx_.rank(), ".safetensors"));
  default_generator(torch::Device(torch::kCPU)).set_state(gens.at("cpu_generator"));
  if (device_.is_cuda() && gens.count("cuda_generator"))
    default_generator(device_).set_state(gens.at("cuda_generator"));
  const int64_t step = t.at("step").get<int64_t>();
  if (ctx_.is_root()) {
    truncate_metrics(spec_.dir / "metrics.jsonl", step);
    log::info(spec_.stage, ": resumed from ", folder.string(), " at step ", step);
  }
  return step;
}

TrainResult Trainer::run() {
  TrainResult res;
  const auto t_run = Clock::now();
  StopSignals stop_signals;
  const int64_t resumed = resume();
  res.resumed_from = resumed;
  int64_t step = std::max<int64_t>(0, resumed);
  const int64_t steps = spec_.optim.steps;
  const int64_t accum = loader_.accumulation();
  MetricsWriter metrics;
  if (ctx_.is_root()) metrics = MetricsWriter(spec_.dir / "metrics.jsonl");
  Progress progress(spec_.stage, steps - step, "steps", ctx_.is_root(), 10.0);
  zero_grads(spec_.params);
  if (spec_.critic) zero_grads(spec_.critic->params);
  // The critic's parameters are frozen while the main loss runs (its gradient passes through them).
  auto critic_trainable = [this](bool on) {
    if (spec_.critic)
      for (auto& [name, p] : spec_.critic->params) p.set_requires_grad(on);
  };

  std::vector<std::string> term_names;
  reset_cuda_peak_memory(device_);
  while (step < steps) {
    comm_->set_step(step);
    const auto t_step = Clock::now();
    double t_data = 0, t_fwd = 0, t_bwd = 0, t_comm = 0, t_opt = 0;
    double loss_sum = 0, critic_sum = 0;
    std::map<std::string, double> terms_sum;
    for (int64_t micro = 0; micro < accum; ++micro) {
      comm_->set_phase("data");
      auto t0 = Clock::now();
      Batch batch = loader_.next();
      t_data += since(t0);
      require<DataError>(batch.step == step && batch.micro == micro, spec_.stage, ": loader returned step ", batch.step,
                         " micro ", batch.micro, " where step ", step, " micro ", micro, " was expected");
      const bool sync = micro == accum - 1;
      if (reducer_) reducer_->prepare(sync);
      comm_->set_phase("forward");
      t0 = Clock::now();
      LossTerms lt;
      critic_trainable(false);
      {
        AutocastGuard autocast(device_, precision_);
        lt = loss_(batch, step);
      }
      require<DataError>(lt.loss.defined() && lt.loss.numel() == 1, spec_.stage, ": the loss function returned no scalar");
      auto scaled = lt.loss.to(torch::kFloat32) * (scaler_.scale() / static_cast<double>(accum));
      t_fwd += since(t0);
      comm_->set_phase("backward");
      t0 = Clock::now();
      scaled.backward();
      t_bwd += since(t0);
      critic_trainable(true);
      loss_sum += lt.loss.detach().to(torch::kFloat64).item<double>();
      for (auto& [k, v] : lt.logged) terms_sum[k] += v;
      if (spec_.critic) {
        if (critic_reducer_) critic_reducer_->prepare(sync);
        comm_->set_phase(spec_.critic->name + " forward");
        t0 = Clock::now();
        LossTerms ct;
        {
          AutocastGuard autocast(device_, precision_);
          ct = spec_.critic->loss(batch, step);
        }
        require<DataError>(ct.loss.defined() && ct.loss.numel() == 1, spec_.stage, ": the ", spec_.critic->name,
                           " loss function returned no scalar");
        auto cs = ct.loss.to(torch::kFloat32) * (scaler_.scale() / static_cast<double>(accum));
        t_fwd += since(t0);
        comm_->set_phase(spec_.critic->name + " backward");
        t0 = Clock::now();
        cs.backward();
        t_bwd += since(t0);
        critic_sum += ct.loss.detach().to(torch::kFloat64).item<double>();
        for (auto& [k, v] : ct.logged) terms_sum[k] += v;
      }
    }
    comm_->set_phase("gradient all-reduce");
    auto t0 = Clock::now();
    if (reducer_) reducer_->finish();
    if (critic_reducer_) critic_reducer_->finish();
    // One small collective per step: the global mean of the loss terms and the stop vote.
    if (term_names.empty())
      for (auto& [k, v] : terms_sum) term_names.push_back(k);
    std::vector<double> stats{loss_sum, critic_sum};
    for (auto& k : term_names) stats.push_back(terms_sum[k]);
    stats.push_back(stop_signals.pending() != 0 ? 1.0 : 0.0);
    auto st = torch::tensor(stats, torch::kFloat64);
    if (device_.is_cuda()) {  // NCCL reduces device tensors only
      auto on_device = st.to(device_);
      comm_->allreduce(on_device, dist::ReduceOp::kSum, "step statistics");
      st = on_device.cpu();
    } else {
      comm_->allreduce(st, dist::ReduceOp::kSum, "step statistics");
    }
    auto sv = st.accessor<double, 1>();
    const double denom = static_cast<double>(accum * ctx_.world_size());
    const double loss = sv[0] / denom, critic_loss = sv[1] / denom;
    const bool stop = sv[static_cast<int64_t>(stats.size()) - 1] > 0;
    t_comm += since(t0);

    comm_->set_phase("optimizer");
    t0 = Clock::now();
    if (scaler_.enabled()) scale_grads(spec_.params, 1.0 / scaler_.scale());
    if (scaler_.enabled() && spec_.critic) scale_grads(spec_.critic->params, 1.0 / scaler_.scale());
    const double norm = grad_norm(spec_.params);
    const double critic_norm = spec_.critic ? grad_norm(spec_.critic->params) : 0.0;
    const bool finite =
        std::isfinite(loss) && std::isfinite(norm) && std::isfinite(critic_loss) && std::isfinite(critic_norm);
    const double lr = lr_at(spec_.optim, step);
    const double critic_lr = spec_.critic ? lr_at(spec_.critic->optim, step) : 0.0;
    if (finite) {
      clip_grads(spec_.params, norm, spec_.optim.grad_clip);
      opt_->step(lr);
      if (spec_.critic) {
        clip_grads(spec_.critic->params, critic_norm, spec_.critic->optim.grad_clip);
        critic_opt_->step(critic_lr);
      }
      if (ema_) ema_->update(spec_.params);
      if (spec_.after_step) {
        std::map<std::string, double> terms;
        for (size_t i = 0; i < term_names.size(); ++i) terms[term_names[i]] = sv[static_cast<int64_t>(i) + 2] / denom;
        spec_.after_step(step + 1, terms);
      }
      bad_in_row_ = 0;
    } else {
      ++skipped_;
      // With fp16 a non-finite gradient under a finite loss is the loss scale's business.
      const bool counts = !scaler_.enabled() || !std::isfinite(loss) || !std::isfinite(critic_loss);
      if (counts) ++bad_in_row_;
      log::warn(spec_.stage, ": step ", step + 1, ": ", !std::isfinite(loss) || !std::isfinite(critic_loss) ? "loss" : "gradient norm",
                " is not finite (loss ", loss, ", grad norm ", norm,
                spec_.critic ? cat(", ", spec_.critic->name, " loss ", critic_loss, ", grad norm ", critic_norm) : std::string(),
                "); step skipped (", bad_in_row_, " in a row, train.max_bad_steps = ",
                spec_.engine.max_bad_steps, ")");
      if (bad_in_row_ >= spec_.engine.max_bad_steps) {
        auto last = complete_checkpoints(checkpoints_dir());
        throw DataError(cat(spec_.stage, ": loss or gradient not finite for ", bad_in_row_, " steps in a row (steps ",
                            step - bad_in_row_ + 2, "..", step + 1, ", train.max_bad_steps = ", spec_.engine.max_bad_steps,
                            "); the last complete checkpoint is ",
                            last.empty() ? std::string("none") : last.back().string(), " and it is kept"));
      }
    }
    scaler_.update(finite);
    zero_grads(spec_.params);
    if (spec_.critic) zero_grads(spec_.critic->params);
    t_opt = since(t0);
    ++step;
    res.last_loss = loss;
    const double t_total = since(t_step);

    if (ctx_.is_root() && (step % spec_.engine.log_every == 0 || step == steps || step == 1)) {
      json m{{"step", step},
             {"loss", loss},
             {"lr", lr},
             {"grad_norm", norm},
             {"skipped", !finite},
             {"samples_per_s", static_cast<double>(spec_.optim.batch) / t_total},
             {"seconds", {{"total", t_total}, {"data", t_data}, {"forward", t_fwd}, {"backward", t_bwd},
                       {"comm", t_comm}, {"optimizer", t_opt}}}};
      if (reducer_) {
        auto rs = reducer_->last_stats();
        m["seconds"]["comm_exposed"] = rs.exposed_wait_s;
        m["seconds"]["comm_in_flight"] = rs.total_comm_s;
        m["seconds"]["allreduce_alone"] = allreduce_alone_s_;
        m["comm_buckets_in_backward"] = rs.buckets_launched_in_backward;
      }
      for (size_t i = 0; i < term_names.size(); ++i) m["terms"][term_names[i]] = sv[static_cast<int64_t>(i) + 2] / denom;
      if (spec_.critic) m[spec_.critic->name] = {{"loss", critic_loss}, {"lr", critic_lr}, {"grad_norm", critic_norm}};
      if (scaler_.enabled()) m["loss_scale"] = scaler_.scale();
      if (device_.is_cuda()) {
        const auto peak = cuda_peak_memory(device_);  // since the run started
        m["cuda_memory"] = {{"allocated_peak_gib", peak.allocated_gib}, {"reserved_peak_gib", peak.reserved_gib}};
      }
      metrics.write(m);
      log::debug(spec_.stage, ": step ", step, " loss ", loss, " lr ", lr, " grad norm ", norm);
    }
    progress.add(1);
    if (step % spec_.engine.checkpoint_every == 0 || step == steps || stop) {
      comm_->set_phase("checkpoint");
      checkpoint(step);
    }
    if (stop) {
      res.stop_signal = stop_signals.pending() != 0 ? stop_signals.pending() : SIGTERM;
      if (ctx_.is_root())
        log::warn(spec_.stage, ": stop requested (", StopSignals::name(res.stop_signal), " on some rank): checkpoint at step ",
                  step, " written, stopping; run the same command again to resume");
      break;
    }
  }
  progress.finish();
  res.step = step;
  res.skipped_steps = skipped_;
  res.seconds = since(t_run);
  return res;
}

}  // namespace mcm::train
