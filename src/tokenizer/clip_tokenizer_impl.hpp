// Internal state of ClipTokenizer, shared by the loaders (clip_loader.cpp) and the encoder
// (clip_tokenizer.cpp). Not installed API.
#pragma once
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe_model.hpp"
#include "tokenizer/clip_tokenizer.hpp"

namespace mcm::tokenizer {

/// A token split off the text before pre-tokenization (transformers' added tokens).
struct AddedToken {
  std::u32string content;
  int64_t id;
  bool normalized;  ///< matched in the normalized text rather than the raw text
};

struct ClipTokenizer::Impl {
  BpeModel bpe;
  Flavor flavor = Flavor::Transformers;
  /// OpenClip: the begin/end token strings, alternatives of its regex, in that order.
  std::vector<std::pair<std::u32string, int64_t>> regex_specials;
  /// Transformers: added tokens (special tokens of the folder).
  std::vector<AddedToken> added;
  int64_t context_length = 77, bos = -1, eos = -1, pad = -1;
  std::string content_hash;

  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache;  ///< pre-token bytes -> ids

  /// Normalizer of transformers' CLIPTokenizer: NFC (Unicode 9.0), White_Space runs -> " ",
  /// lowercase per character.
  static std::u32string hf_normalize(std::u32string_view s);
};

/// Builds the public object from a filled Impl (checks bos/eos/pad and the context length).
ClipTokenizer make_tokenizer(std::unique_ptr<ClipTokenizer::Impl> impl);

}  // namespace mcm::tokenizer
