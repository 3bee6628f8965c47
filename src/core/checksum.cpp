// xxh3 checksums (libxxhash): fast enough to hash every shard on every verify.
#include "core/checksum.hpp"

#include <xxhash.h>

#include <cstdio>
#include <memory>

#include "core/error.hpp"

namespace mcm::checksum {
namespace {
std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "xxh3:%016llx", static_cast<unsigned long long>(v));
  return buf;
}
struct StateDeleter { void operator()(XXH3_state_t* s) const { XXH3_freeState(s); } };
struct FileCloser { void operator()(std::FILE* f) const { std::fclose(f); } };
}  // namespace

uint64_t hash64(std::string_view bytes, uint64_t seed) {
  return XXH3_64bits_withSeed(bytes.data(), bytes.size(), seed);
}

std::string of_bytes(std::string_view bytes) { return hex(XXH3_64bits(bytes.data(), bytes.size())); }

std::string of_file(const std::filesystem::path& path) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) throw IoError(cat("open ", path, " for checksum: ", errno_text(errno)));
  std::unique_ptr<XXH3_state_t, StateDeleter> st(XXH3_createState());
  XXH3_64bits_reset(st.get());
  std::unique_ptr<char[]> buf(new char[1 << 20]);
  size_t n;
  while ((n = std::fread(buf.get(), 1, 1 << 20, f.get())) > 0) XXH3_64bits_update(st.get(), buf.get(), n);
  if (std::ferror(f.get())) throw IoError(cat("read ", path, " for checksum: ", errno_text(errno)));
  return hex(XXH3_64bits_digest(st.get()));
}

}  // namespace mcm::checksum
