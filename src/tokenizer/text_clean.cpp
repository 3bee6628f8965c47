// Text handling of the CLIP tokenizers, reproduced from their sources (Python's html module,
// ftfy 6.3, tokenizers' normalizers); Unicode data comes from ICU.
#include "tokenizer/text_clean.hpp"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/uset.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/error.hpp"

namespace mcm::tokenizer {
namespace {

using U16 = std::vector<UChar>;

U16 to_u16(std::u32string_view s) {
  U16 out(s.size() * 2);
  int32_t n = 0;
  for (char32_t c : s) U16_APPEND_UNSAFE(out.data(), n, static_cast<UChar32>(c));
  out.resize(n);
  return out;
}

std::u32string from_u16(const UChar* s, int32_t n) {
  std::u32string out;
  out.reserve(n);
  for (int32_t i = 0; i < n;) {
    UChar32 c;
    U16_NEXT(s, i, n, c);
    out.push_back(static_cast<char32_t>(c));
  }
  return out;
}

void icu_check(UErrorCode err, const char* what) {
  if (U_FAILURE(err)) throw Error(cat("ICU ", what, ": ", u_errorName(err)));
}

bool all_below(std::u32string_view s, char32_t limit) {
  return std::all_of(s.begin(), s.end(), [limit](char32_t c) { return c < limit; });
}

std::u32string icu_lower(std::u32string_view s) {
  U16 src = to_u16(s);
  U16 dst(src.size() + 16);
  UErrorCode err = U_ZERO_ERROR;
  // "" is the root locale: no Turkish/Lithuanian rules, as Python and Rust.
  int32_t n = u_strToLower(dst.data(), static_cast<int32_t>(dst.size()), src.data(), static_cast<int32_t>(src.size()), "", &err);
  if (err == U_BUFFER_OVERFLOW_ERROR) {
    dst.resize(n);
    err = U_ZERO_ERROR;
    n = u_strToLower(dst.data(), n, src.data(), static_cast<int32_t>(src.size()), "", &err);
  }
  icu_check(err, "u_strToLower");
  return from_u16(dst.data(), n);
}

const char* find(const detail::Mapping* table, std::size_t size, std::string_view name) {
  auto* end = table + size;
  auto* it = std::lower_bound(table, end, name, [](const detail::Mapping& m, std::string_view k) { return std::string_view(m.name) < k; });
  return it != end && std::string_view(it->name) == name ? it->value : nullptr;
}

const char32_t* find(const detail::CodeMapping* table, std::size_t size, char32_t cp) {
  auto* end = table + size;
  auto* it = std::lower_bound(table, end, cp, [](const detail::CodeMapping& m, char32_t k) { return m.cp < k; });
  return it != end && it->cp == cp ? it->value : nullptr;
}

/// The ASCII spelling of s[b, e), or "" when it has any other character (no entity name does).
std::string ascii(std::u32string_view s, std::size_t b, std::size_t e) {
  std::string out;
  for (std::size_t i = b; i < e; ++i) {
    if (s[i] >= 0x80) return {};
    out.push_back(static_cast<char>(s[i]));
  }
  return out;
}

void append(std::u32string& out, const char* utf8) { out += decode_utf8(utf8); }

bool is_ascii_digit(char32_t c) { return c >= '0' && c <= '9'; }
bool is_ascii_hex(char32_t c) { return is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool is_ascii_alnum(char32_t c) { return is_ascii_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/// html.unescape's replacement for the numeric reference `num` (HTML5 rules).
void append_charref(std::u32string& out, uint64_t num) {
  if (num == 0) return out.push_back(0xFFFD);
  if (num == 0x0D) return out.push_back(0x0D);
  if (num >= 0x80 && num <= 0x9F) return out.push_back(detail::kSloppyCp1252[num - 0x80]);  // same table as HTML5's
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return out.push_back(0xFFFD);
  bool invalid = (num >= 0x1 && num <= 0x8) || num == 0xB || (num >= 0xE && num <= 0x1F) || num == 0x7F ||
                 (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE;
  if (!invalid) out.push_back(static_cast<char32_t>(num));
}

// --- ftfy's fixers, in the order fix_and_explain applies them ---------------------------------

/// ftfy.fixes.unescape_html: `&#?[0-9A-Za-z]{1,24};` replaced when it names an HTML5 entity
/// (with a semicolon), one of ftfy's upper-case spellings, or a numeric reference whose
/// html.unescape has no ';' left.
std::u32string ftfy_unescape(std::u32string_view s) {
  std::u32string out;
  out.reserve(s.size());
  std::size_t i = 0, n = s.size();
  while (i < n) {
    if (s[i] != '&') {
      out.push_back(s[i++]);
      continue;
    }
    bool hash = i + 1 < n && s[i + 1] == '#';
    std::size_t b = i + 1 + hash, e = b;
    while (e < n && e - b < 25 && is_ascii_alnum(s[e])) ++e;
    if (e == b || e - b > 24 || e >= n || s[e] != ';') {
      out.push_back(s[i++]);
      continue;
    }
    auto match = s.substr(i, e + 1 - i);
    if (hash) {
      auto un = html_unescape(match);
      out += un.find(U';') == std::u32string::npos ? un : std::u32string(match);
    } else {
      std::string name = ascii(s, i + 1, e + 1);
      const char* v = find(detail::kHtml5, detail::kHtml5_size, name);
      if (!v) v = find(detail::kFtfyUpperEntities, detail::kFtfyUpperEntities_size, name);
      if (v) append(out, v);
      else out += match;
    }
    i = e + 1;
  }
  return out;
}

std::u32string map_chars(std::u32string_view s) {
  // fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes run in this order;
  // each sees the previous one's output (a ligature can yield U+02BC, a width form a quote).
  auto pass = [](std::u32string_view in, auto&& fn) {
    std::u32string out;
    out.reserve(in.size());
    for (char32_t c : in) fn(out, c);
    return out;
  };
  std::u32string t = pass(s, [](std::u32string& o, char32_t c) {
    o.push_back(c >= 0x80 && c <= 0x9F ? detail::kSloppyCp1252[c - 0x80] : c);
  });
  t = pass(t, [](std::u32string& o, char32_t c) {
    const char32_t* v = c >= 0x132 && c <= 0xFB06 ? find(detail::kLigatures, detail::kLigatures_size, c) : nullptr;
    if (v) o += v;
    else o.push_back(c);
  });
  t = pass(t, [](std::u32string& o, char32_t c) {
    const char32_t* v = c == 0x3000 || (c >= 0xFF01 && c <= 0xFFEF) ? find(detail::kWidthMap, detail::kWidthMap_size, c) : nullptr;
    if (v) o += v;
    else o.push_back(c);
  });
  return pass(t, [](std::u32string& o, char32_t c) {
    o.push_back(c == 0x2BC || (c >= 0x2018 && c <= 0x201B) ? U'\'' : c >= 0x201C && c <= 0x201F ? U'"' : c);
  });
}

/// fix_line_breaks, remove_terminal_escapes, remove_control_chars (fix_surrogates has nothing
/// to do: valid UTF-8 has no surrogates).
std::u32string fix_breaks_and_controls(std::u32string_view s) {
  std::u32string t;
  t.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char32_t c = s[i];
    if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') continue;  // "\r\n" -> "\n"
    t.push_back(c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85 ? U'\n' : c);
  }
  std::u32string out;
  out.reserve(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (t[i] == 0x1B && i + 1 < t.size() && t[i + 1] == '[') {  // "\033\[((?:\d|;)*)([a-zA-Z])", \d = Nd
      std::size_t j = i + 2;
      while (j < t.size() && (t[j] == ';' || u_charType(static_cast<UChar32>(t[j])) == U_DECIMAL_DIGIT_NUMBER)) ++j;
      if (j < t.size() && is_ascii_alnum(t[j]) && !is_ascii_digit(t[j])) {
        i = j;
        continue;
      }
    }
    out.push_back(t[i]);
  }
  std::erase_if(out, [](char32_t c) {
    return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) || c == 0xFEFF ||
           (c >= 0xFFF9 && c <= 0xFFFC);
  });
  return out;
}

std::u32string fix_segment(std::u32string text, bool unescape) {
  while (true) {
    std::u32string orig = text;
    if (unescape) text = ftfy_unescape(text);
    text = nfc(fix_breaks_and_controls(map_chars(text)));
    if (text == orig) return text;
  }
}

/// True when ftfy cannot change `s`: printable ASCII without '&' (NFC and every fixer are then
/// the identity).
bool ftfy_identity(std::u32string_view s) {
  return std::all_of(s.begin(), s.end(), [](char32_t c) { return c >= 0x20 && c < 0x7F && c != '&'; });
}

}  // namespace

std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  std::size_t i = 0, n = s.size();
  while (i < n) {
    auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      out.push_back(b);
      ++i;
      continue;
    }
    int len = b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
    char32_t c = len == 2 ? b & 0x1F : len == 3 ? b & 0x0F : b & 0x07;
    bool ok = len > 0 && i + len <= n;
    for (int k = 1; ok && k < len; ++k) {
      auto cb = static_cast<unsigned char>(s[i + k]);
      ok = (cb & 0xC0) == 0x80;
      c = (c << 6) | (cb & 0x3F);
    }
    char32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (!ok || c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", b);
      throw DataError(cat("invalid UTF-8 at byte ", i, " (", hex, ") of a ", n, "-byte text"));
    }
    out.push_back(c);
    i += len;
  }
  return out;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

bool is_letter(char32_t c) {
  if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_L_MASK) != 0;
}

bool is_number(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_N_MASK) != 0;
}

bool is_white_space(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
  return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_WHITE_SPACE);
}

bool is_py_space(char32_t c) { return (c >= 0x1C && c <= 0x1F) || is_white_space(c); }

namespace {

std::u32string normalize(const UNormalizer2* norm, std::u32string_view s) {
  if (all_below(s, 0x300)) return std::u32string(s);  // nothing below U+0300 decomposes or combines
  U16 src = to_u16(s);
  auto len = static_cast<int32_t>(src.size());
  UErrorCode err = U_ZERO_ERROR;
  if (unorm2_quickCheck(norm, src.data(), len, &err) == UNORM_YES && U_SUCCESS(err)) return std::u32string(s);
  err = U_ZERO_ERROR;
  U16 dst(src.size() + 16);
  int32_t n = unorm2_normalize(norm, src.data(), len, dst.data(), static_cast<int32_t>(dst.size()), &err);
  if (err == U_BUFFER_OVERFLOW_ERROR) {
    dst.resize(n);
    err = U_ZERO_ERROR;
    n = unorm2_normalize(norm, src.data(), len, dst.data(), n, &err);
  }
  icu_check(err, "NFC");
  return from_u16(dst.data(), n);
}

const UNormalizer2* nfc_instance() {
  UErrorCode err = U_ZERO_ERROR;
  const UNormalizer2* norm = unorm2_getNFCInstance(&err);
  icu_check(err, "NFC instance");
  return norm;
}

/// ICU's NFC restricted to the characters of Unicode 9.0 ("[:age=9.0:]" is cumulative): the others
/// pass through as boundaries, as unknown characters (combining class 0, no mappings) do in a
/// Unicode 9.0 normalizer. Canonical combining classes and decompositions never change once
/// assigned, so this equals the old tables.
class Nfc9 {
 public:
  Nfc9() {
    UErrorCode err = U_ZERO_ERROR;
    set_ = uset_openPattern(u"[:age=9.0:]", -1, &err);
    icu_check(err, "age=9.0 set");
    uset_freeze(set_);
    norm_ = unorm2_openFiltered(nfc_instance(), set_, &err);
    icu_check(err, "filtered NFC");
  }
  ~Nfc9() {
    unorm2_close(norm_);
    uset_close(set_);
  }
  Nfc9(const Nfc9&) = delete;
  Nfc9& operator=(const Nfc9&) = delete;
  const UNormalizer2* get() const { return norm_; }

 private:
  USet* set_ = nullptr;
  UNormalizer2* norm_ = nullptr;
};

}  // namespace

std::u32string nfc(std::u32string_view s) { return normalize(nfc_instance(), s); }

std::u32string nfc_unicode9(std::u32string_view s) {
  static const Nfc9 norm;
  return normalize(norm.get(), s);
}

std::u32string to_lower(std::u32string_view s, bool final_sigma) {
  if (all_below(s, 0x80)) {
    std::u32string out(s);
    for (char32_t& c : out)
      if (c >= 'A' && c <= 'Z') c += 32;
    return out;
  }
  if (final_sigma) return icu_lower(s);
  // Root-locale lowercasing is context-free except for Final_Sigma, so mapping every capital
  // sigma to U+03C3 and the runs between them as strings equals mapping each character alone.
  std::u32string out;
  std::size_t b = 0;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    if (i < s.size() && s[i] != 0x3A3) continue;
    if (i > b) out += icu_lower(s.substr(b, i - b));
    if (i < s.size()) out.push_back(0x3C3);
    b = i + 1;
  }
  return out;
}

std::u32string html_unescape(std::u32string_view s) {
  if (s.find(U'&') == std::u32string_view::npos) return std::u32string(s);
  std::u32string out;
  out.reserve(s.size());
  std::size_t i = 0, n = s.size();
  while (i < n) {
    if (s[i] != '&') {
      out.push_back(s[i++]);
      continue;
    }
    // '&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)', alternatives in this order.
    std::size_t j = i + 1;
    if (j < n && s[j] == '#') {
      bool hex = j + 1 < n && (s[j + 1] == 'x' || s[j + 1] == 'X') && j + 2 < n && is_ascii_hex(s[j + 2]);
      bool dec = j + 1 < n && is_ascii_digit(s[j + 1]);
      if (!hex && !dec) {
        out.push_back(s[i++]);
        continue;
      }
      std::size_t k = hex ? j + 2 : j + 1;
      uint64_t num = 0;
      for (; k < n && (hex ? is_ascii_hex(s[k]) : is_ascii_digit(s[k])); ++k) {
        uint32_t d = is_ascii_digit(s[k]) ? s[k] - '0' : (s[k] | 0x20) - 'a' + 10;
        num = std::min<uint64_t>(num * (hex ? 16 : 10) + d, 0x110000);  // saturate: all above 0x10FFFF act alike
      }
      if (k < n && s[k] == ';') ++k;
      append_charref(out, num);
      i = k;
      continue;
    }
    std::size_t e = j;
    while (e < n && e - j < 32 && s[e] != '\t' && s[e] != '\n' && s[e] != '\f' && s[e] != ' ' && s[e] != '<' && s[e] != '&' &&
           s[e] != '#' && s[e] != ';')
      ++e;
    if (e < n && s[e] == ';') ++e;
    if (e == j) {  // "&;" or '&' before a stop character: no reference
      out.push_back(s[i++]);
      continue;
    }
    // The whole name, then its longest prefix of at least 2 characters that is a name.
    bool done = false;
    std::size_t len = e - j;
    for (std::size_t x = len; x >= 1 && !done && (x == len || x >= 2); --x) {
      std::string name = ascii(s, j, j + x);
      const char* v = name.empty() ? nullptr : find(detail::kHtml5, detail::kHtml5_size, name);
      if (v) {
        append(out, v);
        out.append(s.substr(j + x, len - x));
        done = true;
      }
    }
    if (!done) out.append(s.substr(i, e - i));
    i = e;
  }
  return out;
}

// Note [ftfy]: ftfy.fix_text (default TextFixerConfig) splits the text after every '\n' (and
// every 1,000,000 code points) and fixes each segment until it stops changing. "auto" HTML
// unescaping is turned off for a segment containing '<' and, because fix_text keeps the changed
// config, for every later segment. We reproduce every fixer except fix_encoding (with its
// restore_byte_a0 / replace_lossy_sequences / decode_inconsistent_utf8 helpers): that one
// guesses at mojibake with heuristics (ftfy.badness) and re-decodes text in another codec. It
// changes nothing in ASCII text or text ftfy does not judge "bad"; the golden test excludes, and
// lists, the few well-formed strings where it fires.
std::u32string ftfy_fix_text(std::u32string_view s) {
  if (ftfy_identity(s)) return std::u32string(s);
  constexpr std::size_t kMaxSegment = 1000000;
  std::u32string out;
  bool unescape = true;
  for (std::size_t pos = 0; pos < s.size();) {
    std::size_t brk = s.find(U'\n', pos);
    brk = brk == std::u32string_view::npos ? s.size() : brk + 1;
    brk = std::min(brk, pos + kMaxSegment);
    auto seg = s.substr(pos, brk - pos);
    if (unescape && seg.find(U'<') != std::u32string_view::npos) unescape = false;
    out += fix_segment(std::u32string(seg), unescape);
    pos = brk;
  }
  return out;
}

}  // namespace mcm::tokenizer
