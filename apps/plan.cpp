// The pipeline plan: stage commands and the manifest's completeness rule (apps/plan.hpp).
#include "apps/plan.hpp"

#include <map>

#include "core/error.hpp"
#include "core/manifest.hpp"

namespace mcm::app {
namespace stdfs = std::filesystem;
using json = nlohmann::json;

void PipelineSection::visit(config::FieldVisitor& v) {
  v("ranks", ranks);
  v("launcher", launcher);
  v("launcher_args", launcher_args);
  v("stages", stages);
}

void PipelineSection::validate(const config::Config&) const {
  config::require_positive(ranks, "pipeline.ranks");
  require<ConfigError>(!stages.empty(), "pipeline.stages is empty");
  for (const auto& s : stages)
    config::require_one_of(s, "pipeline.stages", {"synth", "prep", "teacher", "distill", "baseline", "sample", "eval", "report"});
}
MCM_CONFIG_SECTION(PipelineSection);

namespace {

// Complete: the record's status is "complete" and its outputs are all on disk with their recorded
// sizes (checkpoints, which come and go, aside).
bool outputs_present(const json& r, const stdfs::path& run_dir) {
  if (r.value("status", "") != "complete") return false;
  if (!r.contains("outputs")) return true;
  for (const auto& o : r.at("outputs")) {
    if (o.value("retention", "") == "rolling") continue;
    std::error_code ec;
    const auto bytes = stdfs::file_size(run_dir / o.value("path", ""), ec);
    if (ec || bytes != o.value("bytes", uint64_t{0})) return false;
  }
  return true;
}

// The ids of the records that make `stage` complete for this configuration, or "" when it is not:
// its latest record, or for a stage split into N parts (a prep job array) the latest record of
// every part of the latest split, each complete.
std::string complete_records(const json& doc, const std::string& stage, const std::string& config_hash,
                             const stdfs::path& run_dir) {
  if (!doc.contains("records")) return "";
  const json* latest = nullptr;
  for (const auto& r : doc.at("records"))  // by reference: latest points into doc
    if (r.value("stage", "") == stage && r.value("config_hash", "") == config_hash) latest = &r;
  if (!latest) return "";
  const int64_t count = latest->contains("part") ? latest->at("part").value("count", int64_t{1}) : 1;
  if (count <= 1) return outputs_present(*latest, run_dir) ? latest->value("id", "") : "";
  std::map<int64_t, const json*> parts;  // the latest record of each part of this split
  for (const auto& r : doc.at("records"))
    if (r.value("stage", "") == stage && r.value("config_hash", "") == config_hash && r.contains("part") &&
        r.at("part").value("count", int64_t{1}) == count)
      parts[r.at("part").value("index", int64_t{0})] = &r;
  if (static_cast<int64_t>(parts.size()) != count) return "";
  std::string ids;
  for (auto& [i, r] : parts) {
    if (!outputs_present(*r, run_dir)) return "";
    if (!ids.empty()) ids += ',';
    ids += r->value("id", "");
  }
  return ids;
}

}  // namespace

std::vector<PlannedStage> plan_pipeline(const StageArgs& args, const config::Config& cfg) {
  const auto& ps = cfg.section<PipelineSection>();
  const stdfs::path run_dir = cfg.run.dir;
  json doc;
  if (stdfs::exists(run_dir / "manifest.json")) doc = manifest::Manifest(run_dir).read();
  std::vector<PlannedStage> out;
  bool upstream_runs = false;
  for (const auto& name : ps.stages) {
    PlannedStage p;
    p.name = name;
    p.stage = name == "baseline" ? "distill" : name;
    std::vector<std::string> sets = args.sets;
    if (name == "baseline") {
      // MCM.md's LCM baseline: the same distillation without the motion head or the discriminator.
      const std::string dir = cfg.to_json()["sample"]["baseline"].get<std::string>();
      for (const char* s : {"distill.motion=raw", "distill.disc_weight=0"}) sets.emplace_back(s);
      sets.push_back("distill.out=" + dir);
    }
    p.config_hash = cfg.hash();
    if (name == "baseline") {
      std::vector<stdfs::path> files(args.configs.begin(), args.configs.end());
      try {
        p.config_hash = config::load(files, sets).hash();
      } catch (const ConfigError& e) {
        throw ConfigError(cat("baseline: ", e.what()));
      }
    }
    for (const auto& c : args.configs) p.args.insert(p.args.end(), {"--config", c});
    for (const auto& s : sets) p.args.insert(p.args.end(), {"--set", s});
    if (!upstream_runs && !doc.is_null()) p.record = complete_records(doc, p.stage, p.config_hash, run_dir);
    p.complete = !p.record.empty();
    upstream_runs |= !p.complete;
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace mcm::app
