// The shared main of the MPI gtest binaries (LBANN style): one DistContext for the
// process, results printed by rank 0, the exit code reduced over the ranks.
#pragma once
#include <filesystem>

#include "dist/dist_context.hpp"

namespace mcm::test {
/// The process's DistContext (singleton or under mpiexec).
dist::DistContext& dist_ctx();
/// A fresh folder shared by all ranks (made by rank 0, name broadcast). Collective.
std::filesystem::path shared_temp_dir(const std::string& tag);
}  // namespace mcm::test
