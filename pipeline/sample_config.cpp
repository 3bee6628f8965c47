#include "pipeline/sample_config.hpp"

#include <set>

#include "core/error.hpp"

namespace mcm::stages {

void SampleSection::visit(config::FieldVisitor& v) {
  v("prompts", prompts);
  v("count", count);
  v("seeds", seeds);
  v("methods", methods);
  v("steps", steps);
  v("guidance", guidance);
  v("eta", eta);
  v("student", student);
  v("baseline", baseline);
  v("ablations", ablations);
  v("batch", batch);
  v("previews", previews);
  v("fps", fps);
}

void SampleSection::validate(const config::Config&) const {
  config::require_positive(count, "sample.count");
  config::require_positive(seeds, "sample.seeds");
  config::require_positive(batch, "sample.batch");
  config::require_positive(fps, "sample.fps");
  require<ConfigError>(previews >= 0, "sample.previews = ", previews, ": must be >= 0");
  require<ConfigError>(!methods.empty(), "sample.methods is empty: nothing to sample");
  std::set<std::string> seen;
  for (const auto& m : methods) {
    config::require_one_of(m, "sample.methods", {"teacher_ddim", "teacher_dpm", "teacher_ddim50", "student", "baseline"});
    require<ConfigError>(seen.insert(m).second, "sample.methods lists \"", m, "\" twice");
  }
  require<ConfigError>(!steps.empty(), "sample.steps is empty");
  for (auto s : steps)
    require<ConfigError>(s >= 1 && s <= 50, "sample.steps holds ", s, ": step counts must be in 1..50 (the LCM grid)");
  require<ConfigError>(guidance >= 1, "sample.guidance = ", guidance, ": must be >= 1 (1 = no guidance)");
  require<ConfigError>(eta >= 0 && eta <= 1, "sample.eta = ", eta, ": must be in [0, 1]");
  for (auto [key, dir] : {std::pair<const char*, const std::string*>{"sample.student", &student}, {"sample.baseline", &baseline}})
    require<ConfigError>(!dir->empty() && dir->find('/') == std::string::npos, key, " = \"", *dir,
                         "\": must be a distill.out folder name under run.dir");
  for (const auto& a : ablations) {
    require<ConfigError>(!a.empty() && a.find('/') == std::string::npos && a != "." && a != "..", "sample.ablations holds \"",
                         a, "\": each must be a distill.out folder name under run.dir");
    require<ConfigError>(a.rfind("teacher", 0) != 0 && a != "student" && a != "baseline", "sample.ablations holds \"", a,
                         "\", which names a method; use the folder's distill.out name (e.g. \"distill_raw\")");
    require<ConfigError>(seen.insert(a).second, "sample.ablations lists \"", a, "\" twice");
  }
}

}  // namespace mcm::stages
