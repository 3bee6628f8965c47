// Text -> ids for both flavours: cleaning/normalization, CLIP's pre-tokenizer regex (hand-coded,
// see Note [clip regex]), byte-level BPE with a cache, begin/end tokens, truncation, padding.
#include "tokenizer/clip_tokenizer.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "tokenizer/clip_tokenizer_impl.hpp"
#include "tokenizer/text_clean.hpp"

namespace mcm::tokenizer {
namespace {

constexpr std::size_t kMaxCacheEntries = 1 << 19;  // bounded: prep tokenizes millions of captions

// Note [clip regex]: both references find, left to right, the first alternative that matches of
//   SPECIALS | 's | 't | 're | 've | 'm | 'll | 'd | [\p{L}]+ | [\p{N}] | [^\s\p{L}\p{N}]+
// and drop what no alternative matches (White_Space). open_clip uses `regex` with IGNORECASE on
// lowercased text: 's' then also matches U+017F (long s), and U+0345 (whose case folding is a
// letter) matches neither [\p{L}] nor the negated class, so it is dropped like a space. tokenizers
// is case-sensitive; its SPECIALS are "<|startoftext|>" and "<|endoftext|>", which its
// ByteLevel pre-tokenizer (GPT-2 regex) then splits into "<|", the name and "|>" (GPT-2's regex
// leaves every other piece whole).
struct Piece {
  std::size_t begin, end;
  int64_t special;  ///< id of an OpenClip special token, -1 for a word
};

bool same_char(char32_t text, char32_t pattern, bool ignore_case) {
  if (text == pattern) return true;
  if (!ignore_case) return false;
  if (text >= 'A' && text <= 'Z') return text + 32 == pattern;
  return (pattern == 's' && text == 0x17F) || (pattern == 'k' && text == 0x212A) || (pattern == 'i' && text == 0x130);
}

bool matches_at(std::u32string_view s, std::size_t i, std::u32string_view pat, bool ignore_case) {
  if (s.size() - i < pat.size()) return false;
  for (std::size_t k = 0; k < pat.size(); ++k)
    if (!same_char(s[i + k], pat[k], ignore_case)) return false;
  return true;
}

void scan(std::u32string_view s, const ClipTokenizer::Impl& im, std::vector<Piece>& out) {
  static constexpr std::u32string_view kContractions[] = {U"'s", U"'t", U"'re", U"'ve", U"'m", U"'ll", U"'d"};
  static constexpr std::u32string_view kHfSpecials[] = {U"startoftext", U"endoftext"};
  const bool oc = im.flavor == Flavor::OpenClip;
  auto other = [oc](char32_t c) { return !is_white_space(c) && !is_letter(c) && !is_number(c) && !(oc && c == 0x345); };
  std::size_t i = 0, n = s.size();
  while (i < n) {
    std::size_t e = 0;
    int64_t special = -1;
    if (oc) {
      for (auto& [text, id] : im.regex_specials)
        if (matches_at(s, i, text, true)) {
          // A case-insensitive match is one piece, but only the exact string hits open_clip's
          // cache of specials: "<ſtart_of_text>" is BPE-encoded as a word.
          e = i + text.size();
          if (s.substr(i, text.size()) == text) special = id;
          break;
        }
    } else if (s[i] == '<' && i + 1 < n && s[i + 1] == '|') {
      for (auto name : kHfSpecials)
        if (matches_at(s, i + 2, name, false) && matches_at(s, i + 2 + name.size(), U"|>", false)) {
          out.push_back({i, i + 2, -1});
          out.push_back({i + 2, i + 2 + name.size(), -1});
          out.push_back({i + 2 + name.size(), i + 4 + name.size(), -1});
          e = i + 4 + name.size();
          break;
        }
      if (e) {
        i = e;
        continue;
      }
    }
    if (!e && s[i] == '\'')
      for (auto c : kContractions)
        if (matches_at(s, i, c, oc)) {
          e = i + c.size();
          break;
        }
    if (!e) {
      if (is_letter(s[i])) {
        for (e = i + 1; e < n && is_letter(s[e]);) ++e;
      } else if (is_number(s[i])) {
        e = i + 1;
      } else if (other(s[i])) {
        for (e = i + 1; e < n && other(s[e]);) ++e;
      } else {
        ++i;  // White_Space (and U+0345 for OpenClip): no alternative matches
        continue;
      }
    }
    out.push_back({i, e, special});
    i = e;
  }
}

/// open_clip's clean="lower": ftfy.fix_text, html.unescape twice, str.split + " ".join (which
/// also strips), str.lower().
std::u32string open_clip_clean(std::u32string_view text) {
  std::u32string t = html_unescape(html_unescape(ftfy_fix_text(text)));
  std::u32string joined;
  joined.reserve(t.size());
  for (std::size_t i = 0; i < t.size();) {
    if (is_py_space(t[i])) {
      ++i;
      continue;
    }
    if (!joined.empty()) joined.push_back(U' ');
    while (i < t.size() && !is_py_space(t[i])) joined.push_back(t[i++]);
  }
  return to_lower(joined, true);
}

/// Leftmost-longest matches of `tokens` (those with normalized == `normalized`) in s, as
/// tokenizers' added vocabulary finds them. Calls emit(text) for the gaps and emit_id(id).
template <class Text, class Id>
void split_added(std::u32string_view s, const std::vector<AddedToken>& tokens, bool normalized, Text&& emit, Id&& emit_id) {
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size();) {
    const AddedToken* best = nullptr;
    for (auto& t : tokens)
      if (t.normalized == normalized && !t.content.empty() && (!best || t.content.size() > best->content.size()) &&
          matches_at(s, i, t.content, false))
        best = &t;
    if (!best) {
      ++i;
      continue;
    }
    if (i > start) emit(s.substr(start, i - start));
    emit_id(best->id);
    i += best->content.size();
    start = i;
  }
  if (start < s.size()) emit(s.substr(start));
}

}  // namespace

std::u32string ClipTokenizer::Impl::hf_normalize(std::u32string_view s) {
  std::u32string t = nfc_unicode9(s), r;
  r.reserve(t.size());
  for (std::size_t i = 0; i < t.size();) {
    if (is_white_space(t[i])) {
      r.push_back(U' ');
      while (i < t.size() && is_white_space(t[i])) ++i;
    } else {
      r.push_back(t[i++]);
    }
  }
  return to_lower(r, false);
}

const char* flavor_name(Flavor f) { return f == Flavor::OpenClip ? "open_clip" : "transformers"; }

ClipTokenizer make_tokenizer(std::unique_ptr<ClipTokenizer::Impl> impl) {
  require<DataError>(impl->bos >= 0 && impl->eos >= 0 && impl->pad >= 0, "tokenizer: begin, end or pad token has no id");
  require<DataError>(impl->context_length >= 2, "tokenizer: context length ", impl->context_length,
                     " leaves no room for begin and end tokens");
  return ClipTokenizer(std::move(impl));
}

ClipTokenizer::ClipTokenizer(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)),
      flavor_(impl_->flavor),
      context_length_(impl_->context_length),
      bos_id_(impl_->bos),
      eos_id_(impl_->eos),
      pad_id_(impl_->pad),
      vocab_size_(impl_->bpe.size()),
      content_hash_(impl_->content_hash) {}
ClipTokenizer::ClipTokenizer(ClipTokenizer&&) noexcept = default;
ClipTokenizer& ClipTokenizer::operator=(ClipTokenizer&&) noexcept = default;
ClipTokenizer::~ClipTokenizer() = default;

std::vector<int64_t> ClipTokenizer::encode(std::string_view text) const {
  const Impl& im = *impl_;
  std::u32string raw = decode_utf8(text);
  std::vector<int64_t> ids;
  std::vector<Piece> pieces;
  std::string bytes;
  auto encode_pieces = [&](std::u32string_view s) {
    pieces.clear();
    scan(s, im, pieces);
    for (const Piece& p : pieces) {
      if (p.special >= 0) {
        ids.push_back(p.special);
        continue;
      }
      bytes = encode_utf8(s.substr(p.begin, p.end - p.begin));
      {
        std::lock_guard lock(im.cache_mu);
        auto it = im.cache.find(bytes);
        if (it != im.cache.end()) {
          ids.insert(ids.end(), it->second.begin(), it->second.end());
          continue;
        }
      }
      std::vector<int64_t> word;
      im.bpe.encode_word(bytes, word);
      ids.insert(ids.end(), word.begin(), word.end());
      std::lock_guard lock(im.cache_mu);
      if (im.cache.size() >= kMaxCacheEntries) im.cache.clear();
      im.cache.emplace(bytes, std::move(word));
    }
  };
  if (im.flavor == Flavor::OpenClip) {
    encode_pieces(open_clip_clean(raw));
    return ids;
  }
  auto push_id = [&](int64_t id) { ids.push_back(id); };
  split_added(raw, im.added, false, [&](std::u32string_view seg) {
    split_added(Impl::hf_normalize(seg), im.added, true, encode_pieces, push_id);
  }, push_id);
  return ids;
}

std::vector<int64_t> ClipTokenizer::tokenize(std::string_view text) const {
  std::vector<int64_t> ids = encode(text);
  auto keep = std::min<std::size_t>(ids.size(), static_cast<std::size_t>(context_length_ - 2));
  std::vector<int64_t> out;
  out.reserve(context_length_);
  out.push_back(bos_id_);
  out.insert(out.end(), ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(keep));
  out.push_back(eos_id_);
  out.resize(context_length_, pad_id_);
  return out;
}

}  // namespace mcm::tokenizer
