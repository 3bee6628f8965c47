#include "pipeline/report_config.hpp"

#include "core/error.hpp"

namespace mcm::stages {

void ReportSection::visit(config::FieldVisitor& v) {
  v("grid_prompts", grid_prompts);
  v("plot_width", plot_width);
  v("plot_height", plot_height);
}

void ReportSection::validate(const config::Config&) const {
  config::require_positive(grid_prompts, "report.grid_prompts");
  require<ConfigError>(plot_width >= 320 && plot_width <= 4096 && plot_height >= 200 && plot_height <= 4096,
                       "report.plot_width x report.plot_height = ", plot_width, " x ", plot_height,
                       ": plots are 320..4096 x 200..4096 pixels");
}

}  // namespace mcm::stages
