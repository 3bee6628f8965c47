// safetensors: a memory-mapped reader that refuses untrusted files with a clear error (header past
// the file, offsets out of range or overlapping, dtype/shape disagreeing with the byte count, absurd
// sizes), a writer (atomic, sorted keys, 8-byte aligned header), and sharded checkpoints through
// `*.safetensors.index.json`. Tensors are views of bytes; models convert them to torch.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mcm::io {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

/// Bytes per element; the name as safetensors spells it ("F32", "BF16", ...).
size_t dtype_size(DType t);
const char* dtype_name(DType t);
/// Throws DataError for an unknown name.
DType parse_dtype(const std::string& name);

struct TensorView {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  ///< valid while the owning file is open
  size_t nbytes = 0;
  int64_t numel() const;
};

/// One .safetensors file, memory-mapped read-only, validated on open.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);
  /// Validates a file image already in memory (used by the fuzz test); `name` goes into errors.
  static SafetensorsFile from_bytes(std::vector<uint8_t> bytes, const std::string& name);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// Throws DataError naming the file and key when absent.
  const TensorView& at(const std::string& key) const;

 private:
  SafetensorsFile() = default;
  void parse(const std::string& name);
  std::string name_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  void* map_ = nullptr;  ///< mmap region (or null when owning `owned_`)
  std::vector<uint8_t> owned_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

struct TensorToWrite {
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
  size_t nbytes;
};

/// Writes a safetensors file atomically (tmp + fsync + rename). Checks each byte count.
void write_safetensors(const std::filesystem::path& path, const std::map<std::string, TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

/// A checkpoint folder entry: a single file, or an index (`*.safetensors.index.json`) over shards.
/// Every key maps to the file that holds it; a key in two shards, or an index naming a missing
/// shard or a key the shard lacks, is an error.
class SafetensorsCheckpoint {
 public:
  explicit SafetensorsCheckpoint(const std::filesystem::path& file_or_index);
  std::vector<std::string> keys() const;
  const TensorView& at(const std::string& key) const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

}  // namespace mcm::io
