// `mcm sample`: few-step samples of the teacher, the MCM student and the LCM baseline from the same
// noise, for the evaluation and the report. Every configured (method, step count) is a job that
// writes sample/<job>.h5 (uint8 videos [N, T, H, W, 3], prompts, prompt indices, seeds; h5py reads
// it as is) and sample/previews/<job>.gif and .mp4 (the first sample.previews side by side).
// Sample n = prompt * seeds + seed starts from noise keyed by (run.seed, prompt, seed); samples
// are batched globally (batch k = samples [k B, (k + 1) B), run by rank k % world), so the files do
// not depend on the world size; each rank writes a part, rank 0 merges them in order. A job whose file the manifest shows complete for the same models, prompts
// and settings is reused, so an interrupted run resumes at the first unfinished job.
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <optional>
#include <sstream>

#include "core/checksum.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/rng.hpp"
#include "diffusion/noise.hpp"
#include "io/hdf5_store.hpp"
#include "io/media_encode.hpp"
#include "models/encoders.hpp"
#include "models/weights.hpp"
#include "pipeline/prep_shards.hpp"
#include "pipeline/sample_config.hpp"
#include "pipeline/stages.hpp"
#include "pipeline/teacher_fidelity.hpp"
#include "pipeline/teacher_model.hpp"
#include "stages/stage_run.hpp"
#include "stages/stage_table.hpp"
#include "tokenizer/text_clean.hpp"

namespace mcm::stages {
namespace {
using json = nlohmann::json;
namespace stdfs = std::filesystem;

// Version of what a job writes for the same models, prompts and settings: bump when sampling,
// decoding or the file layout changes, so older files are not reused.
constexpr const char* kSampleCodeVersion = "1";
MCM_CONFIG_SECTION(SampleSection);

// The prompt file: one UTF-8 prompt per line (a final newline and "\r\n" endings allowed); an
// empty line, invalid UTF-8 or a prompt over 1000 bytes is an error naming the line.
std::vector<std::string> read_prompt_file(const stdfs::path& path) {
  require<IoError>(stdfs::is_regular_file(path), "sample: prompt file ", path, " (sample.prompts) not found");
  const std::string text = fs::read_text(path);
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  for (int64_t no = 1; std::getline(in, line); ++no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    require<DataError>(!line.empty(), "sample: ", path.string(), " line ", no, ": empty prompt");
    require<DataError>(line.size() <= 1000, "sample: ", path.string(), " line ", no, ": prompt of ", line.size(),
                       " bytes (at most 1000)");
    try {
      tokenizer::decode_utf8(line);
    } catch (const DataError& e) {
      throw DataError(cat("sample: ", path.string(), " line ", no, ": ", e.what()));
    }
    out.push_back(line);
  }
  require<DataError>(!out.empty(), "sample: prompt file ", path.string(), " holds no prompts");
  return out;
}

// A distilled student: distill/<dir>/student/{unet,scheduler}.
struct StudentSource {
  stdfs::path unet;
  std::string checksum;
  diffusion::ScheduleOptions schedule;
  diffusion::LcmOptions lcm;
};

StudentSource find_student(const stdfs::path& run_dir, const std::string& dir, const char* key) {
  StudentSource s;
  const stdfs::path student = run_dir / dir / "student";
  s.unet = student / "unet";
  const stdfs::path sched = student / "scheduler" / "scheduler_config.json";
  require<IoError>(stdfs::is_regular_file(s.unet / "config.json") && stdfs::is_regular_file(sched), "sample: no student at ",
                   student, " (", key, " = \"", dir, "\"): run `mcm distill` with distill.out = \"", dir, "\" first");
  s.checksum = models::folder_checksum(s.unet);
  try {
    const json j = json::parse(fs::read_text(sched));
    s.schedule.num_train_timesteps = j.at("num_train_timesteps");
    s.schedule.beta_start = j.at("beta_start");
    s.schedule.beta_end = j.at("beta_end");
    s.schedule.beta_schedule = j.at("beta_schedule");
    s.schedule.rescale_zero_terminal_snr = j.value("rescale_betas_zero_snr", false);
    s.lcm.original_inference_steps = j.at("original_inference_steps");
    s.lcm.timestep_scaling = j.at("timestep_scaling");
    s.lcm.prediction = diffusion::parse_prediction(j.at("prediction_type").get<std::string>());
  } catch (const json::exception& e) {
    throw DataError(cat("sample: student scheduler ", sched, ": ", e.what()));
  }
  return s;
}

// One (method, step count): its file name and how it samples.
struct Job {
  std::string name;    ///< e.g. "teacher_ddim_4step"
  std::string method;  ///< "teacher_ddim", "teacher_dpm", "student", "baseline", or an ablation's folder
  int64_t steps = 0;
};

std::vector<Job> jobs_of(const SampleSection& sc) {
  std::vector<Job> jobs;
  for (const auto& m : sc.methods) {
    if (m == "teacher_ddim50") {
      jobs.push_back({"teacher_ddim_50step", "teacher_ddim", 50});
      continue;
    }
    for (auto s : sc.steps) jobs.push_back({cat(m, "_", s, "step"), m, s});
  }
  for (const auto& a : sc.ablations)
    for (auto s : sc.steps) jobs.push_back({cat(a, "_", s, "step"), a, s});
  return jobs;
}

// Up to `n` videos [T, H, W, 3] side by side, scaled up (nearest) to at least 64 pixels high.
torch::Tensor preview_grid(const std::vector<torch::Tensor>& videos) {
  auto row = torch::cat(videos, 2);  // [T, H, n W, 3]
  const int64_t scale = std::max<int64_t>(1, (64 + row.size(1) - 1) / row.size(1));
  if (scale > 1) row = row.repeat_interleave(scale, 1).repeat_interleave(scale, 2);
  // Even sides for 4:2:0 H.264.
  return row.slice(1, 0, row.size(1) / 2 * 2).slice(2, 0, row.size(2) / 2 * 2).contiguous();
}

}  // namespace

int run_sample(const config::Config& cfg, const dist::DistContext& ctx) {
  const auto& sc = cfg.section<SampleSection>();
  const stdfs::path run_dir = cfg.run.dir, out = run_dir / "sample", parts = out / "parts", previews = out / "previews";
  torch::set_num_threads(resolve_threads(cfg, ctx));
  const torch::Device device = rank_device(ctx);
  const auto seed = static_cast<uint64_t>(cfg.run.seed);

  ShardInfo info = read_latent_shards(ctx, run_dir / "prep", "sample");
  std::vector<std::string> prompts = sc.prompts.empty() ? held_out_prompts(sc.count, seed, info.captions)
                                                        : read_prompt_file(sc.prompts);
  std::string prompt_text;
  for (const auto& p : prompts) prompt_text += p + "\n";
  const std::string prompts_checksum = checksum::of_bytes(prompt_text);

  bool needs_teacher = false;
  for (const auto& m : sc.methods) needs_teacher = needs_teacher || m.rfind("teacher", 0) == 0;
  std::optional<TeacherSource> teacher_src;
  if (needs_teacher) teacher_src = find_teacher(cfg, "sample");
  std::map<std::string, StudentSource> students;
  for (const auto& m : sc.methods)
    if (m == "student" || m == "baseline")
      students.emplace(m, find_student(run_dir, m == "student" ? sc.student : sc.baseline,
                                       m == "student" ? "sample.student" : "sample.baseline"));
  for (const auto& a : sc.ablations) students.emplace(a, find_student(run_dir, a, "sample.ablations"));

  // What a job's samples depend on beyond its method and step count (which name its file): not
  // sample.methods, sample.steps or the preview settings, so adding a method reuses the others.
  StageRun stage("sample", kSampleCodeVersion, cfg, ctx,
                 {"sample.prompts", "sample.count", "sample.seeds", "sample.guidance", "sample.eta", "sample.batch", "models",
                  "run.seed"});
  if (ctx.is_root()) {
    fs::make_dirs(parts);
    fs::make_dirs(previews);
  }
  ctx.barrier();

  auto text_encoder = models::make_text_encoder(cfg.models.text_encoder, run_dir);
  require_text_encoder_fits(*text_encoder, info, "sample");
  text_encoder->place(device, torch::kFloat32);
  auto autoencoder = models::make_autoencoder(cfg.models.autoencoder);
  autoencoder->place(device, torch::kFloat32);
  const auto uncond = text_encoder->encode({""}).to(device);

  const int64_t total = static_cast<int64_t>(prompts.size()) * sc.seeds;
  const std::vector<int64_t> latent = info.latent;
  json summary = json::object();
  int64_t reused = 0, sampled = 0;
  // Models are loaded on first use ("teacher", "student", "baseline") and kept for the jobs after it.
  std::map<std::string, models::VideoUnet> nets;

  for (const auto& job : jobs_of(sc)) {
    const bool is_teacher = job.method.rfind("teacher", 0) == 0;
    const std::string model_checksum = is_teacher ? teacher_src->checksum : students.at(job.method).checksum;
    const std::string input_checksum = cat(model_checksum, "+prompts:", prompts_checksum);
    const json input{{"path", (is_teacher ? teacher_src->unet : students.at(job.method).unet).string()}, {"kind", "set"},
                     {"checksum", input_checksum}, {"model_checksum", model_checksum}, {"prompts_checksum", prompts_checksum}};
    const stdfs::path file = out / (job.name + ".h5"), gif = previews / (job.name + ".gif"), mp4 = previews / (job.name + ".mp4");
    json jinfo{{"file", stdfs::relative(file, run_dir).string()}, {"method", job.method}, {"steps", job.steps},
               {"samples", total}, {"prompts", static_cast<int64_t>(prompts.size())}, {"seeds", sc.seeds}};
    if (is_teacher) {
      jinfo["guidance"] = sc.guidance;
      if (job.method == "teacher_ddim") jinfo["eta"] = sc.eta;
    }
    // Reuse: rank 0 decides from the manifest; every rank follows.
    std::string skip = "0";
    if (ctx.is_root()) {
      auto prev = stage.reusable(file, input_checksum);
      if (prev) {
        stage.record_reused(*prev);
        for (const auto& p : {gif, mp4})
          if (auto e = stage.reusable(p, input_checksum)) stage.record_reused(*e);
        skip = "1";
      }
    }
    if (ctx.broadcast(skip) == "1") {
      if (ctx.is_root()) log::info("sample: ", job.name, ": ", file.string(), " is up to date: reused");
      summary[job.name] = jinfo;
      ++reused;
      continue;
    }

    const std::string model = is_teacher ? "teacher" : job.method;
    if (!nets.count(model)) {
      auto net = is_teacher ? load_teacher_unet(*teacher_src) : models::load_video_unet(students.at(job.method).unet);
      net->to(device);
      net->eval();
      nets.emplace(model, net);
    }
    models::VideoUnet* net = &nets.at(model);
    const auto& schedule_opts = is_teacher ? teacher_src->schedule : students.at(job.method).schedule;
    diffusion::NoiseSchedule schedule(schedule_opts);

    // Global batch k holds samples [k B, (k + 1) B) and goes to rank k % world: every batch is
    // the same whatever the world size, so its floating-point results are too.
    const int64_t B = sc.batch, batches = (total + B - 1) / B;
    const stdfs::path part = parts / cat(job.name, ".rank", ctx.rank(), ".h5");
    {
      std::unique_ptr<io::VideoSampleWriter> writer;
      for (int64_t k = ctx.rank(); k < batches; k += ctx.world_size()) {
        std::vector<int64_t> ids;
        for (int64_t n = k * B; n < std::min(total, (k + 1) * B); ++n) ids.push_back(n);
        std::vector<std::string> batch_prompts;
        std::vector<rng::Key> keys;
        for (auto n : ids) {
          batch_prompts.push_back(prompts[static_cast<size_t>(n / sc.seeds)]);
          keys.push_back(rng::key(seed, "sample", static_cast<uint64_t>(n / sc.seeds), cat("noise/", n % sc.seeds)));
        }
        auto x = diffusion::randn_per_sample(keys, latent, torch::TensorOptions().device(device));
        auto step_noise = [&](int64_t k) {
          std::vector<rng::Key> sk;
          for (auto n : ids)
            sk.push_back(rng::key(seed, "sample", static_cast<uint64_t>(n / sc.seeds), cat("step_noise/", n % sc.seeds, "/", k)));
          return diffusion::randn_per_sample(sk, latent, torch::TensorOptions().device(device));
        };
        torch::NoGradGuard no_grad;
        auto cond = text_encoder->encode(batch_prompts).to(device);
        torch::Tensor x0;
        if (job.method == "teacher_ddim") {
          auto ddim = teacher_ddim(teacher_src->prediction, teacher_src->schedule.rescale_zero_terminal_snr);
          ddim.eta = sc.eta;
          x0 = sample_ddim_cfg(*net, schedule, x, cond, uncond, sc.guidance, job.steps, ddim, step_noise);
        } else if (job.method == "teacher_dpm") {
          diffusion::DpmSolverOptions dpm;
          dpm.prediction = teacher_src->prediction;
          // With zero terminal SNR the schedule's last step is pure noise: trailing spacing starts there.
          if (teacher_src->schedule.rescale_zero_terminal_snr) dpm.timestep_spacing = "trailing";
          x0 = sample_dpm_cfg(*net, schedule, x, cond, uncond, sc.guidance, job.steps, dpm);
        } else {
          x0 = sample_lcm(*net, schedule, x, cond, job.steps, students.at(job.method).lcm, step_noise);
        }
        auto clips = decode_clips(*autoencoder, x0.to(torch::kCPU));
        for (size_t i = 0; i < clips.size(); ++i) {
          auto v = clip_to_uint8(clips[i]);
          if (!writer)
            writer = std::make_unique<io::VideoSampleWriter>(part, static_cast<hsize_t>(v.size(0)), static_cast<hsize_t>(v.size(1)),
                                                             static_cast<hsize_t>(v.size(2)));
          writer->append(v.data_ptr<uint8_t>(), batch_prompts[i], ids[i] / sc.seeds, ids[i] % sc.seeds);
        }
      }
      if (writer) writer->finish();
    }
    ctx.barrier();

    if (ctx.is_root()) {
      // Merge the parts in sample order: sample n is in batch k = n / B, written by rank k % world
      // as row (k / world) B + n % B of its part.
      std::vector<std::unique_ptr<io::VideoSampleReader>> readers;
      for (int r = 0; r < ctx.world_size() && r < batches; ++r)
        readers.push_back(std::make_unique<io::VideoSampleReader>(parts / cat(job.name, ".rank", r, ".h5")));
      const auto shape = readers.front()->video_shape();
      io::VideoSampleWriter merged(file, shape[0], shape[1], shape[2]);
      std::vector<torch::Tensor> grid;
      for (int64_t n = 0; n < total; ++n) {
        const int64_t k = n / B;
        auto& rd = *readers[static_cast<size_t>(k % ctx.world_size())];
        const auto row = static_cast<hsize_t>((k / ctx.world_size()) * B + n % B);
        auto v = rd.video(row);
        merged.append(v.data(), rd.prompt(row), rd.prompt_index(row), rd.seed(row));
        if (static_cast<int64_t>(grid.size()) < sc.previews)
          grid.push_back(torch::from_blob(v.data(), {static_cast<int64_t>(shape[0]), static_cast<int64_t>(shape[1]),
                                                     static_cast<int64_t>(shape[2]), 3}, torch::kUInt8).clone());
      }
      merged.set_attr("method", job.method);
      merged.set_attr("steps", job.steps);
      merged.set_attr("seed", static_cast<int64_t>(cfg.run.seed));
      if (is_teacher) merged.set_attr("guidance", sc.guidance);
      merged.set_attr("model_checksum", model_checksum);
      merged.set_attr("prompts_checksum", prompts_checksum);
      merged.finish();
      readers.clear();
      for (int r = 0; r < ctx.world_size(); ++r) (void)fs::remove_file(parts / cat(job.name, ".rank", r, ".h5"));
      stage.record_output(file, {{"kind", "samples"}, {"method", job.method}, {"steps", job.steps}, {"input", input},
                                 {"counts", {{"samples", total}}}});
      if (!grid.empty()) {
        auto g = preview_grid(grid);
        const int f = static_cast<int>(g.size(0)), h = static_cast<int>(g.size(1)), w = static_cast<int>(g.size(2));
        auto gif_bytes = io::encode_gif(g.data_ptr<uint8_t>(), f, w, h, static_cast<int>(sc.fps));
        fs::write_atomic(gif, std::string_view(reinterpret_cast<const char*>(gif_bytes.data()), gif_bytes.size()));
        io::VideoEncodeOptions vo;
        vo.fps = static_cast<int>(sc.fps);
        vo.crf = 18;
        auto mp4_bytes = io::encode_mp4(g.data_ptr<uint8_t>(), f, w, h, vo);
        fs::write_atomic(mp4, std::string_view(reinterpret_cast<const char*>(mp4_bytes.data()), mp4_bytes.size()));
        stage.record_output(gif, {{"kind", "preview"}, {"input", input}});
        stage.record_output(mp4, {{"kind", "preview"}, {"input", input}});
      }
      log::info("sample: ", job.name, ": ", total, " samples -> ", file.string());
    }
    ctx.barrier();
    summary[job.name] = jinfo;
    ++sampled;
  }
  if (ctx.is_root()) {
    fs::write_atomic(out / "samples.json", summary.dump(1) + "\n");
    stage.record_output(out / "samples.json", json::object({{"kind", "sample_index"}}));
  }
  json fields{{"jobs", summary}, {"sampled", sampled}, {"reused", reused}, {"prompts", static_cast<int64_t>(prompts.size())},
              {"prompt_source", sc.prompts.empty() ? std::string("held-out") : sc.prompts}};
  return stage.finish({}, fields) ? 0 : 1;
}

MCM_STAGE("sample", 50, run_sample, "few-step samples of the teacher, the student and the baseline from the same noise");

}  // namespace mcm::stages
