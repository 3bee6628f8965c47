// The stage registry behind MCM_STAGE.
#include "stages/stage_table.hpp"

#include <algorithm>
#include <stdexcept>

#include "core/error.hpp"

namespace mcm::stages {
namespace {
std::vector<StageDef>& rows() {
  static std::vector<StageDef> r;  // filled during static initialisation, read afterwards
  return r;
}
}  // namespace

void register_stage(StageDef def) {
  for (auto& r : rows())
    if (r.name == def.name || r.order == def.order)
      throw std::logic_error(cat("stage \"", def.name, "\" (order ", def.order, ") clashes with \"", r.name, "\""));
  rows().push_back(std::move(def));
  std::sort(rows().begin(), rows().end(), [](const StageDef& a, const StageDef& b) { return a.order < b.order; });
}

std::vector<StageDef> stage_table() { return rows(); }

namespace {
std::vector<std::pair<std::string, DryRunFn>>& dry_runs() {
  static std::vector<std::pair<std::string, DryRunFn>> d;
  return d;
}
}  // namespace

void register_dry_run(const std::string& name, DryRunFn fn) { dry_runs().emplace_back(name, fn); }

DryRunFn find_dry_run(std::string_view name) {
  for (auto& [n, fn] : dry_runs())
    if (n == name) return fn;
  return nullptr;
}

const StageDef* find_stage(std::string_view name) {
  for (auto& r : rows())
    if (r.name == name) return &r;
  return nullptr;
}

}  // namespace mcm::stages
