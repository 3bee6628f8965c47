// StageRun implementation (record, journal, reuse, merge at finish) and the environment record.
#include "stages/stage_run.hpp"

#include <csignal>
#include <cstdlib>
#include <set>
#include <thread>

#include "core/build_info.hpp"
#include "core/checksum.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "io/ffmpeg_util.hpp"
#include "io/hdf5_store.hpp"
#include "models/encoders.hpp"

namespace mcm::stages {
using manifest::json;

manifest::json environment_versions() {
  return json{{"mcm", MCM_VERSION},
              {"compiler", MCM_CXX_COMPILER},
              {"build_type", MCM_BUILD_TYPE},
              {"libtorch", models::torch_version()},
              {"mpi", dist::mpi_version()},
              {"hdf5", io::hdf5_version()},
              {"ffmpeg", io::av::version()},
              {"cuda", dist::cuda_version()},
              {"nccl", dist::nccl_version()}};
}

c10::Device rank_device(const dist::DistContext& ctx) {
  return ctx.device() >= 0 ? c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(ctx.device())) : c10::Device(c10::kCPU);
}

int resolve_threads(const config::Config& cfg, const dist::DistContext& ctx) {
  if (cfg.run.threads > 0) return static_cast<int>(cfg.run.threads);
  // Under Slurm the rank's share is what it was given (--cpus-per-task), not the node's cores.
  if (const char* c = std::getenv("SLURM_CPUS_PER_TASK"); c && std::atoi(c) > 0) return std::atoi(c);
  unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  return std::max(1, static_cast<int>(hw) / std::max(1, ctx.local_size()));
}

void add_counts(json& a, const json& b) {
  if (!b.is_object()) return;
  for (auto& [k, v] : b.items()) {
    if (v.is_object()) {
      if (!a.contains(k)) a[k] = json::object();
      add_counts(a[k], v);
    } else if (v.is_number_integer()) {
      a[k] = a.value(k, int64_t{0}) + v.get<int64_t>();
    }
  }
}

namespace {
// Note [attempts]: one record per piece of work, however many jobs it takes. A record whose
// work stopped early is continued by the next run of the same work instead of a new record
// beside it: its attempts list every job (start, end, status, hosts, Slurm job and restart
// count). Continued: the latest record of this stage, configuration, stage hash and part when
// it is "interrupted" (a stop signal, checkpointed) or when it is still "running" under this
// very Slurm job (and array task): a requeued job's earlier attempt is dead by definition.
// Any other "running" record may be alive (another array task, a concurrent run) or was
// killed outside Slurm: the new run opens its own, and still reuses that record's outputs.
json slurm_info() {
  json j = json::object();
  for (const char* v : {"SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT", "SLURM_JOB_NODELIST"})
    if (const char* s = std::getenv(v)) j[v] = s;
  return j;
}
bool same_part(const json& rec, const config::Config::Part& part) {
  const json p = rec.value("part", json{{"index", 0}, {"count", 1}});
  return p.value("index", int64_t{0}) == part.index && p.value("count", int64_t{1}) == part.count;
}
}  // namespace

std::string StageRun::resumable_record(const json& doc, const config::Config& cfg) const {
  if (!doc.contains("records")) return "";
  const auto& recs = doc.at("records");
  const std::string config_hash = cfg.hash();
  for (auto it = recs.rbegin(); it != recs.rend(); ++it) {
    const json& r = *it;
    if (r.value("stage", "") != stage_ || r.value("config_hash", "") != config_hash ||
        r.value("stage_hash", "") != stage_hash_ || !same_part(r, cfg.part))
      continue;
    const std::string status = r.value("status", "");
    if (status == "interrupted") return r.value("id", "");
    if (status != "running") return "";
    const json was = r.value("slurm", json::object()), now = slurm_info();
    const bool same_job = now.contains("SLURM_JOB_ID") && was.value("SLURM_JOB_ID", "") == now["SLURM_JOB_ID"] &&
                          was.value("SLURM_ARRAY_TASK_ID", "") == now.value("SLURM_ARRAY_TASK_ID", "");
    return same_job ? r.value("id", "") : "";
  }
  return "";
}

StageRun::StageRun(std::string stage, std::string code_version, const config::Config& cfg,
                   const dist::DistContext& ctx, const std::vector<std::string>& hash_parts,
                   const std::string& extra_hash)
    : stage_(std::move(stage)), cfg_(cfg), ctx_(ctx), run_dir_(cfg.run.dir), manifest_(cfg.run.dir) {
  require<ConfigError>(!code_version.empty(), "stage ", stage_, ": empty code_version");
  stage_hash_ = checksum::of_bytes(cat(stage_, "/", code_version, "|", cfg.hash(hash_parts), "|", extra_hash));
  auto hosts_all = ctx.allgather(ctx.hostname());
  std::set<std::string> hosts(hosts_all.begin(), hosts_all.end());
  std::string id;
  if (ctx.is_root()) {
    fs::make_dirs(run_dir_ / stage_);
    fs::write_atomic(run_dir_ / stage_ / "config.toml", cfg.to_toml());
    const json attempt{{"started", manifest::now_iso()},
                       {"world_size", ctx.world_size()},
                       {"hosts", std::vector<std::string>(hosts.begin(), hosts.end())},
                       {"slurm", slurm_info()}};
    id = resumable_record(manifest_.read_stored(), cfg);
    if (!id.empty()) {
      const size_t attempts = manifest_.reopen_record(id, attempt);
      log::info(stage_, ": continuing record ", id, " (attempt ", attempts, ")");
    } else {
      json header{{"config", cfg.to_json()},
                  {"config_hash", cfg.hash()},
                  {"stage_hash", stage_hash_},
                  {"code_version", code_version},
                  {"config_sources", cfg.sources},
                  {"world_size", ctx.world_size()},
                  {"hosts", attempt["hosts"]},
                  {"code_revision", core::code_revision()},
                  {"versions", environment_versions()},
                  {"seeds", {{"run.seed", cfg.run.seed}}},
                  {"slurm", attempt["slurm"]},
                  {"attempts", json::array({attempt})}};
      if (cfg.part.count > 1) header["part"] = {{"index", cfg.part.index}, {"count", cfg.part.count}};
      id = manifest_.begin_record(stage_, header);
    }
  }
  id_ = ctx.broadcast(id);
  journal_.emplace(run_dir_, id_, ctx.rank());
  previous_ = manifest::recorded_outputs(manifest_.read(), stage_);
}

std::optional<json> StageRun::reusable(const std::filesystem::path& output, const std::string& input_checksum) const {
  std::string rel = std::filesystem::relative(output, run_dir_).string();
  auto it = previous_.find(rel);
  if (it == previous_.end()) return std::nullopt;
  const json& e = it->second;
  if (e.value("stage_hash", "") != stage_hash_) return std::nullopt;
  std::string in = e.contains("input") ? e["input"].value("checksum", "") : "";
  if (in != input_checksum) return std::nullopt;
  std::error_code ec;
  auto bytes = std::filesystem::file_size(output, ec);
  if (ec || bytes != e.value("bytes", uint64_t{0})) return std::nullopt;
  try {
    if (checksum::of_file(output) != e.value("checksum", "")) return std::nullopt;
  } catch (const IoError&) {
    return std::nullopt;  // unreadable: redo it rather than fail the shard
  }
  return e;
}

json StageRun::record_output(const std::filesystem::path& output, json extra) {
  json entry = manifest::file_entry(run_dir_, output);
  entry["stage_hash"] = stage_hash_;
  entry["rank"] = ctx_.rank();
  entry.update(extra);
  journal_->append(entry);
  // Fault injection for the resume tests: die like a killed job right after the N-th output.
  static const char* kill_after = std::getenv("MCM_FAULT_KILL_AFTER_OUTPUTS");
  static int recorded = 0;
  if (kill_after && ++recorded >= std::atoi(kill_after)) std::raise(SIGKILL);
  return entry;
}

void StageRun::record_reused(const json& entry) { journal_->append(entry); }

bool StageRun::finish(const std::vector<std::string>& my_errors, const json& record_fields) {
  // Errors travel as JSON arrays: a message may span lines (a c10::Error's backtrace).
  auto all = ctx_.allgather(json{{"errors", my_errors}, {"appended", journal_->appended()}}.dump());
  json errors = json::array();
  std::vector<int64_t> appended;
  for (int r = 0; r < static_cast<int>(all.size()); ++r) {
    json part = json::parse(all[static_cast<size_t>(r)]);
    for (auto& e : part["errors"]) errors.push_back(cat("rank ", r, ": ", e.get<std::string>()));
    appended.push_back(part["appended"].get<int64_t>());
  }
  // Every rank's entries are durable in its journal (each append is fdatasync'd) and its file is
  // closed (close-to-open consistency on NFS) before rank 0 merges and totals them.
  journal_->close();
  ctx_.barrier();
  if (ctx_.is_root()) {
    manifest_.close_record(id_, [&](json& rec) {
      json counts = json::object(), inputs = json::array();
      std::set<std::string> seen;
      for (auto& o : rec["outputs"]) {
        if (o.contains("counts")) add_counts(counts, o["counts"]);
        if (o.contains("input") && seen.insert(o["input"].value("path", "")).second) inputs.push_back(o["input"]);
      }
      rec["counts"] = counts;
      rec["inputs"] = inputs;
      rec["status"] = errors.empty() ? "complete" : "failed";
      if (errors.empty()) rec.erase("errors");
      else rec["errors"] = errors;
      if (!rec.contains("ended")) rec["ended"] = manifest::now_iso();
      // merge_patch with a non-object (a null json) would replace the whole record.
      if (record_fields.is_object()) rec.merge_patch(record_fields);
      if (rec.contains("attempts") && rec["attempts"].is_array() && !rec["attempts"].empty()) {
        json& a = rec["attempts"].back();
        a["ended"] = rec["ended"];
        a["status"] = rec["status"];
        if (rec.contains("interrupted") && rec["status"] == "interrupted") a["interrupted"] = rec["interrupted"];
      }
    }, appended);
  }
  ctx_.barrier();
  return errors.empty();
}

}  // namespace mcm::stages
