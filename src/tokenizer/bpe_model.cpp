// Byte-level BPE over vocabulary ids: merges are keyed by the ids of their two parts.
#include "tokenizer/bpe_model.hpp"

#include <cstdio>
#include <limits>

#include "core/error.hpp"
#include "tokenizer/text_clean.hpp"

namespace mcm::tokenizer {

ByteAlphabet::ByteAlphabet() {
  auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
  int k = 0, extra = 0;
  for (int b = 0; b < 256; ++b)
    if (printable(b)) {
      of[b] = static_cast<char32_t>(b);
      order[k++] = static_cast<uint8_t>(b);
    }
  for (int b = 0; b < 256; ++b)
    if (!printable(b)) {
      of[b] = static_cast<char32_t>(256 + extra++);
      order[k++] = static_cast<uint8_t>(b);
    }
}

const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet a;
  return a;
}

BpeModel::BpeModel(Vocab vocab, const Merges& merges, const std::function<std::string(std::size_t)>& where)
    : vocab_(std::move(vocab)) {
  const auto& alpha = byte_alphabet();
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    append_utf8(ch, alpha.of[b]);
    byte_id_[b] = id(ch);
    byte_eow_id_[b] = id(ch + "</w>");
    if (byte_id_[b] < 0 || byte_eow_id_[b] < 0) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", b);
      throw DataError(cat("vocabulary has no token \"", byte_id_[b] < 0 ? ch : ch + "</w>", "\" for byte ", hex,
                          " (a byte-level BPE vocabulary needs all 512)"));
    }
  }
  require<DataError>(merges.size() < static_cast<std::size_t>(std::numeric_limits<int32_t>::max()), "too many merges");
  merges_.reserve(merges.size());
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const auto& [a, b] = merges[i];
    int64_t ia = id(a), ib = id(b), ir = id(a + b);
    if (ia < 0 || ib < 0) throw DataError(cat(where(i), ": merge part \"", ia < 0 ? a : b, "\" is not in the vocabulary"));
    if (ir < 0) throw DataError(cat(where(i), ": merge result \"", a + b, "\" is not in the vocabulary"));
    merges_.insert_or_assign(key(ia, ib), Merge{static_cast<int32_t>(i), static_cast<int32_t>(ir)});
  }
}

int64_t BpeModel::id(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  return it == vocab_.end() ? -1 : it->second;
}

void BpeModel::encode_word(std::string_view bytes, std::vector<int64_t>& out) const {
  if (bytes.empty()) return;
  std::vector<int64_t> word(bytes.size());
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    auto b = static_cast<uint8_t>(bytes[i]);
    word[i] = i + 1 == bytes.size() ? byte_eow_id_[b] : byte_id_[b];
  }
  std::vector<int64_t> next;
  while (word.size() > 1) {
    const Merge* best = nullptr;
    uint64_t best_key = 0;
    for (std::size_t i = 0; i + 1 < word.size(); ++i) {
      auto it = merges_.find(key(word[i], word[i + 1]));
      if (it != merges_.end() && (!best || it->second.rank < best->rank)) {
        best = &it->second;
        best_key = it->first;
      }
    }
    if (!best) break;
    next.clear();
    for (std::size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && key(word[i], word[i + 1]) == best_key) {
        next.push_back(best->result);
        i += 2;
      } else {
        next.push_back(word[i++]);
      }
    }
    word.swap(next);
  }
  out.insert(out.end(), word.begin(), word.end());
}

}  // namespace mcm::tokenizer
