// The shared main of the communicator/reducer tests (LBANN style): one DistContext for the
// process, results printed by rank 0, the exit code reduced over the ranks.
#pragma once
#include <filesystem>

#include "dist/dist_context.hpp"

namespace mcm::test {
/// The process's DistContext (singleton or under mpiexec).
dist::DistContext& dist_ctx();
/// A fresh folder shared by all ranks (made by rank 0, name broadcast). Collective.
std::filesystem::path shared_temp_dir(const std::string& tag);
/// Removes a flat folder and its files (std::filesystem::remove_all is unusable next to
/// libtorch, which exports a broken copy of it; see core/fs.hpp).
void remove_flat_dir(const std::filesystem::path& dir);
}  // namespace mcm::test
