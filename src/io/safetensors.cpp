// safetensors reader/writer. Format: u64 little-endian header length N, N bytes of JSON
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then data.
#include "io/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/fs.hpp"

namespace mcm::io {
namespace {
// Header limit: the reference implementation refuses headers over 100 MB.
constexpr uint64_t kMaxHeader = 100ull << 20;
// Note [size limits]: every size and every tensor's byte count stay at or below 2^62, so shapes
// fit int64_t and numel * dtype_size cannot wrap (unchecked, F64 [2^61 + 1] wraps to 8 bytes).
constexpr uint64_t kMaxBytes = uint64_t{1} << 62;
constexpr int64_t kMaxDims = 16;

struct DTypeInfo { DType t; const char* name; size_t size; };
constexpr DTypeInfo kDTypes[] = {{DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2},
                                 {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
                                 {DType::I16, "I16", 2}, {DType::I8, "I8", 1}, {DType::U8, "U8", 1},
                                 {DType::BOOL, "BOOL", 1}};
}  // namespace

size_t dtype_size(DType t) {
  for (auto& d : kDTypes) if (d.t == t) return d.size;
  return 0;
}
const char* dtype_name(DType t) {
  for (auto& d : kDTypes) if (d.t == t) return d.name;
  return "?";
}
DType parse_dtype(const std::string& n) {
  for (auto& d : kDTypes) if (n == d.name) return d.t;
  throw DataError(cat("unsupported safetensors dtype \"", n, "\""));
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : name_(path.string()) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(cat("open safetensors ", path, ": ", errno_text(errno)));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw IoError(cat("stat ", path, ": ", errno_text(e)));
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* m = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw IoError(cat("mmap ", path, ": ", errno_text(e)));
    }
    map_ = m;
    base_ = static_cast<const uint8_t*>(m);
  }
  ::close(fd);
  try {
    parse(name_);
  } catch (...) {
    if (map_) munmap(map_, size_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile SafetensorsFile::from_bytes(std::vector<uint8_t> bytes, const std::string& name) {
  SafetensorsFile f;
  f.name_ = name;
  f.owned_ = std::move(bytes);
  f.base_ = f.owned_.data();
  f.size_ = f.owned_.size();
  f.parse(name);
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) munmap(map_, size_);
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept { *this = std::move(o); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this == &o) return *this;
  if (map_) munmap(map_, size_);
  name_ = std::move(o.name_);
  map_ = o.map_;
  size_ = o.size_;
  owned_ = std::move(o.owned_);
  // Views point into the mapping (unchanged) or into owned_ (moved buffer keeps its address).
  base_ = map_ ? static_cast<const uint8_t*>(map_) : owned_.data();
  tensors_ = std::move(o.tensors_);
  metadata_ = std::move(o.metadata_);
  o.map_ = nullptr;
  o.base_ = nullptr;
  o.size_ = 0;
  return *this;
}

void SafetensorsFile::parse(const std::string& name) {
  auto bad = [&](const std::string& why) { return DataError(cat("safetensors ", name, ": ", why)); };
  if (size_ < 8) throw bad(cat("file has ", size_, " bytes, shorter than the 8-byte header length"));
  uint64_t n = 0;
  std::memcpy(&n, base_, 8);  // little-endian on every platform we build for
  if (n > kMaxHeader) throw bad(cat("header length ", n, " exceeds the 100 MiB limit"));
  if (n > size_ - 8) throw bad(cat("header length ", n, " runs past the end of the file (", size_, " bytes)"));
  auto header = nlohmann::json::parse(base_ + 8, base_ + 8 + n, nullptr, false);
  if (header.is_discarded() || !header.is_object()) throw bad("header is not a JSON object");
  const uint8_t* data = base_ + 8 + n;
  const uint64_t data_size = size_ - 8 - n;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto& [key, v] : header.items()) {
    if (key == "__metadata__") {
      if (!v.is_object()) throw bad("__metadata__ is not an object");
      for (auto& [mk, mv] : v.items()) {
        if (!mv.is_string()) throw bad(cat("__metadata__[\"", mk, "\"] is not a string"));
        metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    auto where = cat("tensor \"", key, "\"");
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      throw bad(cat(where, ": needs dtype, shape and data_offsets"));
    if (!v["dtype"].is_string()) throw bad(cat(where, ": dtype is not a string"));
    TensorView t;
    try {
      t.dtype = parse_dtype(v["dtype"].get<std::string>());
    } catch (const DataError& e) {
      throw bad(cat(where, ": ", e.what()));
    }
    const auto& shape = v["shape"];
    if (!shape.is_array() || static_cast<int64_t>(shape.size()) > kMaxDims) throw bad(cat(where, ": shape must be an array of at most 16 sizes"));
    // See Note [size limits]. Each size is bounded on its own too: after a zero size the product
    // check alone would let any size through (2^64 - 1 became the int64_t size -1).
    uint64_t want = dtype_size(t.dtype);
    for (auto& d : shape) {
      if (!d.is_number_unsigned()) throw bad(cat(where, ": shape has a non-integer or negative size"));
      uint64_t x = d.get<uint64_t>();
      if (x > kMaxBytes || (x != 0 && want > kMaxBytes / x))
        throw bad(cat(where, ": absurd shape (size ", x, " makes the byte count exceed 2^62)"));
      want *= x;
      t.shape.push_back(static_cast<int64_t>(x));
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw bad(cat(where, ": data_offsets must be two non-negative integers"));
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e || e > data_size)
      throw bad(cat(where, ": data_offsets [", b, ", ", e, "] out of range of the ", data_size, "-byte data section"));
    if (e - b != want)
      throw bad(cat(where, ": ", v["dtype"].get<std::string>(), " ", shape.dump(), " needs ", want, " bytes, offsets give ", e - b));
    t.data = data + b;
    t.nbytes = static_cast<size_t>(e - b);
    ranges.emplace_back(b, e);
    tensors_.emplace(key, t);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second)
      throw bad(cat("tensor data ranges overlap at byte ", ranges[i].first, " of the data section"));
}

const TensorView& SafetensorsFile::at(const std::string& key) const {
  auto it = tensors_.find(key);
  if (it == tensors_.end()) throw DataError(cat("safetensors ", name_, ": no tensor \"", key, "\""));
  return it->second;
}

void write_safetensors(const std::filesystem::path& path, const std::map<std::string, TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (auto& [k, t] : tensors) {
    uint64_t numel = 1;
    for (auto d : t.shape) {
      require<DataError>(d >= 0, "write safetensors ", path, ": tensor \"", k, "\" has a negative size");
      numel *= static_cast<uint64_t>(d);
    }
    require<DataError>(numel * dtype_size(t.dtype) == t.nbytes, "write safetensors ", path, ": tensor \"", k, "\" ",
                       dtype_name(t.dtype), " needs ", numel * dtype_size(t.dtype), " bytes, got ", t.nbytes);
    h[k] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // align the data section to 8 bytes
  std::string out;
  out.reserve(8 + header.size() + offset);
  uint64_t n = header.size();
  out.append(reinterpret_cast<const char*>(&n), 8);
  out += header;
  for (auto& [k, t] : tensors) out.append(static_cast<const char*>(t.data), t.nbytes);
  fs::write_atomic(path, out);
}

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::filesystem::path& p) {
  std::string fname = p.filename().string();
  // An index over shards: *.safetensors.index.json, or a variant's *.safetensors.index.fp16.json.
  if (fname.ends_with(".json")) {
    auto j = nlohmann::json::parse(fs::read_text(p), nullptr, false);
    require<DataError>(!j.is_discarded() && j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
                       "safetensors index ", p, ": needs a \"weight_map\" object");
    std::map<std::string, SafetensorsFile*> by_name;
    for (auto& [key, shard] : j["weight_map"].items()) {
      require<DataError>(shard.is_string(), "safetensors index ", p, ": weight_map[\"", key, "\"] is not a file name");
      std::string s = shard.get<std::string>();
      require<DataError>(s.find('/') == std::string::npos, "safetensors index ", p, ": shard \"", s, "\" must be a plain file name");
      if (!by_name.count(s)) {
        files_.push_back(std::make_unique<SafetensorsFile>(p.parent_path() / s));
        by_name[s] = files_.back().get();
      }
      index_[key] = &by_name[s]->at(key);
    }
    // A tensor a shard holds but the index does not list would be silently ignored: refuse it.
    for (auto& [s, f] : by_name)
      for (auto& [key, t] : f->tensors())
        require<DataError>(index_.count(key) && index_[key] == &t, "safetensors index ", p, ": shard \"", s,
                           "\" holds \"", key, "\", which the index maps elsewhere or not at all");
    return;
  }
  files_.push_back(std::make_unique<SafetensorsFile>(p));
  for (auto& [key, t] : files_.back()->tensors()) index_[key] = &t;
}

std::vector<std::string> SafetensorsCheckpoint::keys() const {
  std::vector<std::string> k;
  for (auto& [name, t] : index_) k.push_back(name);
  return k;
}

const TensorView& SafetensorsCheckpoint::at(const std::string& key) const {
  auto it = index_.find(key);
  if (it == index_.end()) throw DataError(cat("checkpoint: no tensor \"", key, "\""));
  return *it->second;
}

}  // namespace mcm::io
