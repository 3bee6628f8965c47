// `mcm slurm plan` and `mcm slurm submitted`: the C++ half of slurm/submit.sh. The configuration
// is loaded and validated here, in the one place every stage uses, and the plan (which stages
// the manifest records complete, each stage's exact arguments, the sbatch options of each job)
// comes from the same code as `mcm run`'s; the script only calls sbatch and chains the ids.
//
//   eval "$(mcm slurm plan --config F [--set k=v]...)"    shell assignments, see print_plan
//   mcm slurm submitted --config F [--set k=v]... -- NAME=JOBID...   records a submission
#include "apps/slurm.hpp"

#include <pwd.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <regex>
#include <sstream>

#include "apps/cli.hpp"
#include "apps/plan.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/manifest.hpp"
#include "data_prep/prep_config.hpp"
#include "data_prep/synth_config.hpp"

namespace mcm::app {
namespace {
namespace stdfs = std::filesystem;
using json = nlohmann::json;

/// Slurm's time formats ("MM", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS") in seconds,
/// or -1 when `t` is none of them.
int64_t slurm_seconds(const std::string& t) {
  static const std::regex re(R"(^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$)");
  std::smatch m;
  if (!std::regex_match(t, m, re)) return -1;
  auto num = [&](int i) { return m[i].matched ? std::stoll(m[i].str()) : int64_t{0}; };
  if (m[1].matched) return ((num(1) * 24 + num(2)) * 60 + num(3)) * 60 + num(4);  // D-HH[:MM[:SS]]
  if (m[4].matched) return (num(2) * 60 + num(3)) * 60 + num(4);                  // HH:MM:SS
  if (m[3].matched) return num(2) * 60 + num(3);                                  // MM:SS
  return num(2) * 60;                                                              // MM
}

/// [slurm]: how slurm/submit.sh sizes and places the jobs. Launch-only (not in the config hash):
/// resubmitting on another partition or with more nodes skips what is complete. Every key can
/// also be given to submit.sh as an option (--partition, --account, --nodes, --gpus-per-node,
/// --time), which it turns into --set slurm.KEY.
struct SlurmSection {
  static constexpr const char* kName = "slurm";
  static constexpr bool kLaunchOnly = true;
  std::string partition = "";     ///< sbatch --partition ("" = the cluster's default)
  std::string account = "";       ///< sbatch --account ("" = the user's default)
  int64_t nodes = 1;              ///< teacher, distill and baseline jobs: nodes
  int64_t gpus_per_node = 0;      ///< GPUs per node, one rank each (--gpus-per-node); 0 = CPU ranks
  int64_t tasks_per_node = 2;     ///< ranks per node when gpus_per_node = 0
  int64_t cpus_per_task = 1;      ///< cores per rank (torch threads: run.threads, or these)
  int64_t eval_nodes = 1;         ///< sample and eval jobs: nodes (split by prompt and by clip)
  int64_t prep_tasks = 8;         ///< prep job array: tasks, each a contiguous range of shards (<= 1000)
  int64_t prep_ranks = 1;         ///< ranks per prep task (one GPU each when gpus_per_node > 0)
  std::string time = "04:00:00";  ///< time limit of every job but the training ones
  std::string train_time = "";    ///< teacher, distill, baseline time limit ("" = time); they requeue at its end
  int64_t signal_lead = 300;      ///< seconds before a training job's limit at which it checkpoints and requeues
  std::vector<std::string> sbatch_args;  ///< added to every sbatch, e.g. ["--qos=high", "--constraint=h100"]
  std::string env = "";           ///< a file every job sources after slurm/env.sh (modules, site NCCL settings)

  void visit(config::FieldVisitor& v) {
    v("partition", partition);
    v("account", account);
    v("nodes", nodes);
    v("gpus_per_node", gpus_per_node);
    v("tasks_per_node", tasks_per_node);
    v("cpus_per_task", cpus_per_task);
    v("eval_nodes", eval_nodes);
    v("prep_tasks", prep_tasks);
    v("prep_ranks", prep_ranks);
    v("time", time);
    v("train_time", train_time);
    v("signal_lead", signal_lead);
    v("sbatch_args", sbatch_args);
    v("env", env);
  }
  void validate(const config::Config&) const {
    for (auto [v, k] : {std::pair{nodes, "slurm.nodes"}, {tasks_per_node, "slurm.tasks_per_node"},
                        {cpus_per_task, "slurm.cpus_per_task"}, {eval_nodes, "slurm.eval_nodes"},
                        {prep_tasks, "slurm.prep_tasks"}, {prep_ranks, "slurm.prep_ranks"}, {signal_lead, "slurm.signal_lead"}})
      config::require_positive(v, k);
    require<ConfigError>(gpus_per_node >= 0, "slurm.gpus_per_node = ", gpus_per_node, ": must be >= 0");
    // MaxArraySize defaults to 1001 (REFERENCES.md 3.1): more tasks would be refused at submission.
    require<ConfigError>(prep_tasks <= 1000, "slurm.prep_tasks = ", prep_tasks,
                         ": at most 1000 (Slurm's default MaxArraySize is 1001); each task takes a range of shards");
    require<ConfigError>(slurm_seconds(time) > 0, "slurm.time = \"", time,
                         "\": expected a Slurm time limit (MM, HH:MM:SS or D-HH:MM:SS)");
    const std::string tt = train_time.empty() ? time : train_time;
    require<ConfigError>(slurm_seconds(tt) > 0, "slurm.train_time = \"", train_time,
                         "\": expected a Slurm time limit (MM, HH:MM:SS or D-HH:MM:SS)");
    // Slurm may signal up to 60 s early; the job needs the lead for one step plus a checkpoint.
    require<ConfigError>(signal_lead + 60 < slurm_seconds(tt), "slurm.signal_lead = ", signal_lead,
                         " s leaves no time to train within the training time limit ", tt);
    for (const auto& a : sbatch_args)
      require<ConfigError>(a.rfind("--", 0) == 0 && a.find('=') != std::string::npos,
                           "slurm.sbatch_args: \"", a, "\": write each option as --name=value");
  }
};
MCM_CONFIG_SECTION(SlurmSection);

std::string quote(const std::string& s) {  // one shell word, single-quoted
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string array(const std::vector<std::string>& v) {
  std::string out = "(";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += ' ';
    out += quote(v[i]);
  }
  return out + ")";
}

// Input shards prep will see: synth's counts when synth writes them in this run, else the tars there now.
int64_t prep_shard_count(const config::Config& cfg, bool synth_planned) {
  const auto& p = cfg.section<stages::PrepSection>();
  const stdfs::path run_dir = cfg.run.dir;
  if (synth_planned && p.videos.empty() && p.images.empty()) {
    const auto& s = cfg.section<stages::SynthSection>();
    return s.video_shards + (p.encode_images ? s.image_shards : 0);
  }
  auto count = [](const stdfs::path& where) -> int64_t {
    std::error_code ec;
    if (stdfs::is_regular_file(where, ec)) return 1;
    int64_t n = 0;
    for (auto it = stdfs::directory_iterator(where, ec); !ec && it != stdfs::directory_iterator(); it.increment(ec))
      n += it->path().extension() == ".tar";
    return n;
  };
  int64_t n = count(p.videos.empty() ? run_dir / "data" / "videos" : stdfs::path(p.videos));
  if (p.encode_images) n += count(p.images.empty() ? run_dir / "data" / "images" : stdfs::path(p.images));
  return n;
}

// The sbatch options of one stage's job (besides dependencies, name and output, which submit.sh adds).
std::vector<std::string> sbatch_options(const SlurmSection& s, const std::string& name, int64_t prep_parts) {
  std::vector<std::string> o;
  if (!s.partition.empty()) o.push_back("--partition=" + s.partition);
  if (!s.account.empty()) o.push_back("--account=" + s.account);
  o.push_back(cat("--cpus-per-task=", s.cpus_per_task));
  const bool gpu = s.gpus_per_node > 0;
  const bool training = name == "teacher" || name == "distill" || name == "baseline";
  if (name == "synth" || name == "report") {
    o.insert(o.end(), {"--nodes=1", "--ntasks=1", "--time=" + s.time});
  } else if (name == "prep") {
    o.push_back(cat("--array=0-", prep_parts - 1));
    o.insert(o.end(), {"--nodes=1", cat("--ntasks=", s.prep_ranks), "--time=" + s.time});
    if (gpu) o.push_back("--gpus-per-task=1");
  } else {
    const int64_t nodes = training ? s.nodes : s.eval_nodes;
    const int64_t per_node = gpu ? s.gpus_per_node : s.tasks_per_node;
    o.insert(o.end(), {cat("--nodes=", nodes), cat("--ntasks-per-node=", per_node)});
    if (gpu) o.push_back(cat("--gpus-per-node=", s.gpus_per_node));
    if (training) {
      // Note [requeue] in slurm/lib.sh: the batch shell gets USR1 signal_lead s before the end,
      // asks every rank to checkpoint at the next step and requeues the job.
      o.insert(o.end(), {"--time=" + (s.train_time.empty() ? s.time : s.train_time), "--requeue",
                         cat("--signal=B:USR1@", s.signal_lead)});
    } else {
      o.push_back("--time=" + s.time);
    }
  }
  o.insert(o.end(), s.sbatch_args.begin(), s.sbatch_args.end());
  return o;
}

// Shell assignments for slurm/submit.sh (bash arrays, every value single-quoted):
//   MCM_RUN_DIR, MCM_CONFIG_HASH, MCM_ENV_FILE
//   MCM_PLAN=(name...)            every stage of pipeline.stages, in order
//   MCM_STATE_<name>              complete | submit
//   MCM_RECORD_<name>             the complete record(s), when complete
//   MCM_STAGE_<name>              the mcm subcommand (baseline: distill)
//   MCM_ARGS_<name>=(...)         its arguments (--config F... --set k=v...)
//   MCM_SBATCH_<name>=(...)       its sbatch options
//   MCM_PREP_PARTS                parts of the prep job array
//   MCM_LAST_JOBS                 the job ids of the run's last submission, comma-separated
int print_plan(const StageArgs& args, const config::Config& cfg) {
  const auto plan = plan_pipeline(args, cfg);
  const auto& s = cfg.section<SlurmSection>();
  bool synth_planned = false;
  for (const auto& p : plan) synth_planned |= p.name == "synth" && !p.complete;
  const int64_t parts = std::max<int64_t>(1, std::min(s.prep_tasks, prep_shard_count(cfg, synth_planned)));
  std::ostringstream os;
  os << "MCM_RUN_DIR=" << quote(stdfs::absolute(cfg.run.dir).lexically_normal().string()) << "\n";
  os << "MCM_CONFIG_HASH=" << quote(cfg.hash()) << "\n";
  os << "MCM_ENV_FILE=" << quote(s.env) << "\n";
  os << "MCM_PREP_PARTS=" << parts << "\n";
  std::string last;
  if (stdfs::exists(stdfs::path(cfg.run.dir) / "manifest.json")) {
    const json doc = manifest::Manifest(cfg.run.dir).read_stored();
    if (doc.contains("submissions") && !doc["submissions"].empty()) {
      const json jobs = doc["submissions"].back().value("jobs", json::object());  // named: items() would dangle
      for (auto& [k, v] : jobs.items()) {
        if (!last.empty()) last += ',';
        last += v.get<std::string>();
      }
    }
  }
  os << "MCM_LAST_JOBS=" << quote(last) << "\n";
  std::vector<std::string> names;
  for (const auto& p : plan) names.push_back(p.name);
  os << "MCM_PLAN=" << array(names) << "\n";
  for (const auto& p : plan) {
    os << "MCM_STATE_" << p.name << "=" << (p.complete ? "complete" : "submit") << "\n";
    os << "MCM_RECORD_" << p.name << "=" << quote(p.record) << "\n";
    os << "MCM_STAGE_" << p.name << "=" << quote(p.stage) << "\n";
    os << "MCM_ARGS_" << p.name << "=" << array(p.args) << "\n";
    os << "MCM_SBATCH_" << p.name << "=" << array(sbatch_options(s, p.name, parts)) << "\n";
  }
  std::cout << os.str();
  return 0;
}

int record_submission(const StageArgs& args, const config::Config& cfg, const std::vector<std::string>& jobs) {
  json j = json::object();
  for (const auto& kv : jobs) {
    const size_t eq = kv.find('=');
    require<ConfigError>(eq != std::string::npos && eq > 0 && eq + 1 < kv.size(), "mcm slurm submitted: \"", kv,
                         "\": expected STAGE=JOBID");
    j[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  const passwd* pw = ::getpwuid(::getuid());
  json sub{{"time", manifest::now_iso()},
           {"user", pw ? pw->pw_name : std::to_string(::getuid())},
           {"config_hash", cfg.hash()},
           {"config_sources", cfg.sources},
           {"args", args.configs},
           {"jobs", j}};
  if (const char* c = std::getenv("SLURM_CLUSTER_NAME")) sub["cluster"] = c;
  manifest::Manifest(cfg.run.dir).update([&](json& doc) {
    if (!doc.contains("submissions")) doc["submissions"] = json::array();
    doc["submissions"].push_back(sub);
  });
  return 0;
}

void usage() {
  std::fprintf(stderr,
               "usage: mcm slurm plan --config FILE [--config OVERLAY]... [--set key=value]...\n"
               "       mcm slurm submitted --config FILE [--set key=value]... -- STAGE=JOBID...\n"
               "(used by slurm/submit.sh: the plan as shell assignments; a submission recorded in the manifest)\n");
}

}  // namespace

int run_slurm(int argc, char** argv) {
  if (argc < 3 || (std::strcmp(argv[2], "plan") != 0 && std::strcmp(argv[2], "submitted") != 0)) {
    usage();
    return 2;
  }
  const bool plan = std::strcmp(argv[2], "plan") == 0;
  int end = argc;
  std::vector<std::string> jobs;
  for (int i = 3; i < argc; ++i)
    if (std::strcmp(argv[i], "--") == 0) {
      end = i;
      jobs.assign(argv + i + 1, argv + argc);
      break;
    }
  try {
    StageArgs args = parse_stage_args(end, argv, 3);
    if (args.help) {
      usage();
      return 0;
    }
    require<ConfigError>(args.part_count == 1, "mcm slurm: --part is for one prep task, not for the plan");
    std::vector<stdfs::path> files(args.configs.begin(), args.configs.end());
    const config::Config cfg = config::load(files, args.sets);
    return plan ? print_plan(args, cfg) : record_submission(args, cfg, jobs);
  } catch (const Error& e) {
    std::fprintf(stderr, "mcm slurm %s: %s\n", argv[2], e.what());
    return dynamic_cast<const ConfigError*>(&e) ? 2 : 1;
  }
}

}  // namespace mcm::app
