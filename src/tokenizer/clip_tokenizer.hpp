// CLIP's byte-level BPE tokenizer (vocabulary 49408, "</w>" end-of-word marker, 77-token
// context), id for id equal to open_clip's SimpleTokenizer or transformers' CLIPTokenizer
// (golden test: tests/tokenizer). No torch.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mcm::tokenizer {

/// Whose text handling to reproduce. The two references differ on real captions (about a
/// quarter of the golden strings get different ids).
enum class Flavor {
  /// open_clip.tokenizer.SimpleTokenizer (open_clip 3.x, clean="lower"): ftfy.fix_text,
  /// html.unescape twice, strip, whitespace runs -> one space, str.lower() (final sigma), then the
  /// regex with IGNORECASE ('ſ matches 's; U+0345 matches no alternative and is dropped). The
  /// vocabulary's begin/end token strings ("<start_of_text>", "<end_of_text>" in open_clip's
  /// merges file) are matched in the cleaned text and become their ids. Pads with 0.
  OpenClip,
  /// transformers.CLIPTokenizer (transformers 5, tokenizers backend; ftfy is never used): added
  /// special tokens are split off first (on the raw text, or on the normalized text for tokens
  /// marked "normalized"), the rest gets NFC, whitespace runs -> " ", per-character lowercase,
  /// the CLIP regex (case-sensitive) and byte-level splitting. Pads with the folder's pad token.
  Transformers,
};

const char* flavor_name(Flavor f);

/// Tokenizes UTF-8 captions. Thread-safe: encode/tokenize may run concurrently (the BPE cache
/// is locked). Invalid UTF-8 is refused with DataError, never replaced: prep skips such captions.
///
/// Unicode data: ICU 72 (Unicode 15.0) gives the regex classes, NFC and case mappings. For every
/// character assigned by Unicode 14 they equal the references' (checked code point by code point
/// against Python 3.11's str/unicodedata, `regex` and tokenizers; tokenizers' NFC is Unicode 9.0
/// and is reproduced as such, see nfc_unicode9).
///
/// Not reproduced (documented limits, both outside well-formed captions):
///  - ftfy's fix_encoding (heuristic mojibake repair, e.g. "sÃ³" -> "só"): OpenClip leaves such
///    text as it is; see Note [ftfy] in text_clean.cpp.
///  - characters assigned after Unicode 14: the references' own tables disagree there (Python
///    3.11 has Unicode 14, Python 3.12 15.0, `regex` 17, tokenizers' Oniguruma about 15).
///  - added tokens with lstrip/rstrip/single_word, left padding or truncation: refused at load.
class ClipTokenizer {
 public:
  /// A Hugging Face tokenizer folder: vocab.json + merges.txt (first line "#version..." skipped),
  /// or tokenizer.json's model when those are absent; tokenizer_config.json and
  /// special_tokens_map.json (optional) give bos/eos/pad/unk, model_max_length and added tokens.
  /// Throws IoError for a missing or unreadable file, DataError (file and line) for bad content.
  static ClipTokenizer from_folder(const std::filesystem::path& dir, Flavor flavor = Flavor::Transformers);
  /// open_clip's bpe_simple_vocab_16e6.txt.gz: vocabulary = the 256 byte characters, the same
  /// with "</w>", merges lines 1..48894 joined, "<start_of_text>", "<end_of_text>".
  static ClipTokenizer from_open_clip_merges(const std::filesystem::path& gz, Flavor flavor = Flavor::OpenClip);

  ClipTokenizer(ClipTokenizer&&) noexcept;
  ClipTokenizer& operator=(ClipTokenizer&&) noexcept;
  ~ClipTokenizer();

  /// Token ids of `text`, without begin/end tokens and without truncation.
  std::vector<int64_t> encode(std::string_view text) const;
  /// context_length() ids: bos, encode(text), eos, then pad_id(); a longer text is cut to keep
  /// the eos token last.
  std::vector<int64_t> tokenize(std::string_view text) const;

  int64_t context_length() const { return context_length_; }
  int64_t bos_id() const { return bos_id_; }
  int64_t eos_id() const { return eos_id_; }
  int64_t pad_id() const { return pad_id_; }
  int64_t vocab_size() const { return vocab_size_; }
  Flavor flavor() const { return flavor_; }
  /// xxh3 of the files read (vocabulary, merges, configs), for the manifest.
  const std::string& content_hash() const { return content_hash_; }

  struct Impl;

 private:
  explicit ClipTokenizer(std::unique_ptr<Impl> impl);
  friend ClipTokenizer make_tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  Flavor flavor_;
  int64_t context_length_, bos_id_, eos_id_, pad_id_, vocab_size_;
  std::string content_hash_;
};

}  // namespace mcm::tokenizer
