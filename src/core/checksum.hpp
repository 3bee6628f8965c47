// Content checksums for the manifest: xxh3-64, hex, prefixed with the algorithm ("xxh3:...").
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace mcm::checksum {

/// Checksum of a byte range.
std::string of_bytes(std::string_view bytes);
/// Streams a file through xxh3; throws IoError naming the path.
std::string of_file(const std::filesystem::path& path);
/// 64-bit xxh3 of bytes and a seed: the project's stable hash (seeding, config hashes).
uint64_t hash64(std::string_view bytes, uint64_t seed = 0);

}  // namespace mcm::checksum
