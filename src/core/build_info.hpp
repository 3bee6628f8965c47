// What this binary is: optional features (generated header) and the code revision.
#pragma once
#include "mcm/build_config.hpp"

namespace mcm::core {
/// Git revision of this build ("abc123def456", with "-dirty" when built with local changes).
const char* code_revision();
}  // namespace mcm::core
