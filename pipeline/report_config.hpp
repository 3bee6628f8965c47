// [report]: `mcm report`, the run's results as report/index.html and report/summary.md (Note
// [sections] in core/config.hpp). Registered in report.cpp.
#pragma once
#include <cstdint>

#include "core/config.hpp"

namespace mcm::stages {

struct ReportSection {
  static constexpr const char* kName = "report";
  int64_t grid_prompts = 6;  ///< prompts (columns) in each steps comparison GIF, every method a row
  int64_t plot_width = 800;  ///< plot PNG size, pixels (the legend takes the right part)
  int64_t plot_height = 400;

  void visit(config::FieldVisitor& v);
  void validate(const config::Config& cfg) const;
};

}  // namespace mcm::stages
