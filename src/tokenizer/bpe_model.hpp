// Byte-level BPE with an end-of-word suffix, the model both CLIP tokenizers share: a word's UTF-8
// bytes become GPT-2's printable byte characters, "</w>" joins the last one, and merges apply
// lowest rank first, every occurrence left to right (open_clip's loop; tokenizers' queue gives the
// same result on a learned merges list, where a merge's parts always rank before it).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mcm::tokenizer {

/// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes
/// for U+0100.. in byte order. `order` lists the bytes as that table enumerates them (printable
/// ranges first), which is the order of open_clip's first 256 vocabulary entries.
struct ByteAlphabet {
  char32_t of[256];
  uint8_t order[256];
  ByteAlphabet();
};
const ByteAlphabet& byte_alphabet();

class BpeModel {
 public:
  using Vocab = std::unordered_map<std::string, int64_t>;
  using Merges = std::vector<std::pair<std::string, std::string>>;
  BpeModel() = default;
  /// `where(i)` names merge i in error messages ("merges.txt:12"). Throws DataError when a byte
  /// character, a merge part or a merge result is not in the vocabulary. A pair listed twice keeps
  /// its last rank (as both references' dicts do).
  BpeModel(Vocab vocab, const Merges& merges, const std::function<std::string(std::size_t)>& where);

  /// Id of a token string, or -1.
  int64_t id(std::string_view token) const;
  int64_t size() const { return static_cast<int64_t>(vocab_.size()); }
  /// Appends the ids of one pre-token given as UTF-8 bytes.
  void encode_word(std::string_view bytes, std::vector<int64_t>& out) const;

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  static uint64_t key(int64_t a, int64_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }
  Vocab vocab_;
  int64_t byte_id_[256] = {}, byte_eow_id_[256] = {};
  std::unordered_map<uint64_t, Merge> merges_;
};

}  // namespace mcm::tokenizer
