// Loading the CLIP vocabulary: a Hugging Face tokenizer folder (vocab.json + merges.txt or
// tokenizer.json, plus the configs naming special tokens) or open_clip's gzip merges file.
#include <zlib.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/checksum.hpp"
#include "core/error.hpp"
#include "tokenizer/clip_tokenizer_impl.hpp"
#include "tokenizer/text_clean.hpp"

namespace mcm::tokenizer {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int64_t kDefaultContext = 77;
constexpr std::size_t kOpenClipMerges = 49152 - 256 - 2;  // open_clip reads merges[1 : 49152-256-2+1]

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw IoError(cat("open ", p, ": ", errno_text(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw IoError(cat("read ", p, ": ", errno_text(errno)));
  return ss.str();
}

json parse_json(const std::string& text, const fs::path& p) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    std::size_t upto = std::min<std::size_t>(e.byte ? e.byte - 1 : 0, text.size()), line = 1, col = 1;
    for (std::size_t i = 0; i < upto; ++i, ++col)
      if (text[i] == '\n') ++line, col = 0;
    throw DataError(cat("parse ", p.string(), ":", line, ":", col, ": invalid JSON (", e.what(), ")"));
  }
}

struct GzCloser {
  void operator()(gzFile f) const noexcept { gzclose(f); }
};

std::string read_gzip(const fs::path& p) {
  if (!fs::exists(p)) throw IoError(cat("open ", p, ": ", errno_text(ENOENT)));
  std::unique_ptr<gzFile_s, GzCloser> f(gzopen(p.c_str(), "rb"));
  if (!f) throw IoError(cat("open ", p, ": ", errno_text(errno)));
  std::string out;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f.get(), buf, sizeof buf)) > 0) out.append(buf, n);
  int err = Z_OK;
  const char* msg = gzerror(f.get(), &err);
  if (n < 0 || (err != Z_OK && err != Z_STREAM_END)) throw DataError(cat("read ", p, ": corrupt gzip (", msg, ")"));
  if (gzdirect(f.get())) throw DataError(cat("read ", p, ": not a gzip file"));
  int rc = gzclose_r(f.release());
  if (rc != Z_OK) throw DataError(cat("read ", p, ": corrupt or truncated gzip (zlib error ", rc, ")"));
  return out;
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  for (std::size_t b = 0;;) {
    std::size_t e = text.find('\n', b);
    lines.push_back(text.substr(b, e == std::string_view::npos ? std::string_view::npos : e - b));
    if (e == std::string_view::npos) return lines;
    b = e + 1;
  }
}

/// A token named in a config: a string or {"content": ..., flags}.
struct TokenSpec {
  std::string content;
  bool normalized = false, stripped = false;
  int64_t id = -1;
};

TokenSpec token_spec(const json& v, const fs::path& file, const std::string& key) {
  TokenSpec t;
  if (v.is_string()) {
    t.content = v.get<std::string>();
    return t;
  }
  if (!v.is_object() || !v.contains("content") || !v["content"].is_string())
    throw DataError(cat(file.string(), ": \"", key, "\" must be a string or an object with \"content\""));
  t.content = v["content"].get<std::string>();
  t.normalized = v.value("normalized", false);
  t.stripped = v.value("lstrip", false) || v.value("rstrip", false) || v.value("single_word", false);
  if (v.contains("id") && v["id"].is_number_integer()) t.id = v["id"].get<int64_t>();
  return t;
}

int64_t checked_id(const json& v, const fs::path& file, const std::string& token) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
    throw DataError(cat(file.string(), ": id of token \"", token, "\" must be an integer in [0, 2^31)"));
  return v.get<int64_t>();
}

BpeModel::Vocab parse_vocab(const json& j, const fs::path& file) {
  if (!j.is_object()) throw DataError(cat(file.string(), ": vocabulary must be a JSON object of token -> id"));
  BpeModel::Vocab vocab;
  vocab.reserve(j.size());
  for (auto& [k, v] : j.items()) vocab.emplace(k, checked_id(v, file, k));
  return vocab;
}

/// Special and added tokens of a folder, following transformers 5's from_pretrained: the
/// tokenizer_config.json names (defaults: CLIPTokenizer's), then either its added_tokens_decoder
/// or the legacy special_tokens_map.json overrides plus tokenizer.json's added_tokens.
void load_specials(ClipTokenizer::Impl& im, const json& cfg, const json& stm, const json& tj, const fs::path& dir) {
  const fs::path cfg_file = dir / "tokenizer_config.json", stm_file = dir / "special_tokens_map.json";
  std::vector<std::pair<std::string, TokenSpec>> named = {{"bos_token", {"<|startoftext|>"}},
                                                          {"eos_token", {"<|endoftext|>"}},
                                                          {"unk_token", {"<|endoftext|>"}},
                                                          {"pad_token", {"<|endoftext|>"}}};
  std::vector<TokenSpec> listed;  // tokens with their flags, from the added-token lists
  std::vector<TokenSpec> extra;   // additional special tokens
  auto read_named = [&](const json& j, const fs::path& file) {
    for (auto& [key, spec] : named)
      if (j.contains(key) && !j[key].is_null()) spec = token_spec(j[key], file, key);
    for (const char* key : {"additional_special_tokens", "extra_special_tokens"})
      if (j.contains(key) && j[key].is_array())
        for (auto& t : j[key]) extra.push_back(token_spec(t, file, key));
  };
  read_named(cfg, cfg_file);
  if (cfg.contains("added_tokens_decoder") && cfg["added_tokens_decoder"].is_object()) {
    for (auto& [id, t] : cfg["added_tokens_decoder"].items()) {
      TokenSpec s = token_spec(t, cfg_file, "added_tokens_decoder");
      s.id = std::stoll(id);
      listed.push_back(s);
    }
  } else {
    read_named(stm, stm_file);
    if (tj.contains("added_tokens") && tj["added_tokens"].is_array())
      for (auto& t : tj["added_tokens"]) listed.push_back(token_spec(t, dir / "tokenizer.json", "added_tokens"));
  }
  // The first spelling of a token wins (flags from the added-token lists over the names).
  std::vector<std::string> raw;  // raw content of im.added[k]
  auto add = [&](const TokenSpec& s, const fs::path& file) {
    for (std::size_t k = 0; k < raw.size(); ++k)
      if (raw[k] == s.content) return im.added[k].id;
    if (s.stripped)
      throw DataError(cat(file.string(), ": added token \"", s.content, "\" uses lstrip/rstrip/single_word (not supported)"));
    int64_t id = im.bpe.id(s.content) >= 0 ? im.bpe.id(s.content) : s.id;
    if (id < 0) throw DataError(cat(file.string(), ": token \"", s.content, "\" is neither in the vocabulary nor given an id"));
    std::u32string content = decode_utf8(s.content);
    im.added.push_back({s.normalized ? ClipTokenizer::Impl::hf_normalize(content) : content, id, s.normalized});
    raw.push_back(s.content);
    return id;
  };
  for (auto& s : listed) add(s, cfg_file);
  std::vector<int64_t> ids;
  for (auto& [key, spec] : named) ids.push_back(add(spec, cfg_file));
  for (auto& s : extra) add(s, cfg_file);
  im.bos = ids[0];
  im.eos = ids[1];
  im.pad = im.flavor == Flavor::OpenClip ? 0 : ids[3];
  if (im.flavor == Flavor::OpenClip) {  // open_clip's regex matches the begin/end strings instead
    im.regex_specials = {{decode_utf8(named[0].second.content), ids[0]}, {decode_utf8(named[1].second.content), ids[1]}};
    im.added.clear();
  }

  if (cfg.contains("model_max_length") && cfg["model_max_length"].is_number()) {
    double m = cfg["model_max_length"].get<double>();
    // transformers writes 1e30 for "no limit"; CLIP's context is then 77.
    im.context_length = m >= 2 && m <= 1e6 ? static_cast<int64_t>(m) : kDefaultContext;
  }
  for (const char* key : {"padding_side", "truncation_side"})
    if (cfg.contains(key) && cfg[key] != "right")
      throw DataError(cat(cfg_file.string(), ": ", key, " ", cfg[key].dump(), " is not supported (only \"right\")"));
}

}  // namespace

ClipTokenizer ClipTokenizer::from_folder(const fs::path& dir, Flavor flavor) {
  if (!fs::is_directory(dir)) throw IoError(cat("open tokenizer folder ", dir, ": not a directory"));
  auto im = std::make_unique<Impl>();
  im->flavor = flavor;
  std::string hashes;
  auto load = [&](const char* name) {
    std::string text = read_file(dir / name);
    hashes += cat(name, "=", checksum::of_bytes(text), ";");
    return text;
  };
  auto optional_json = [&](const char* name) { return fs::exists(dir / name) ? parse_json(load(name), dir / name) : json::object(); };

  json tj = optional_json("tokenizer.json");
  if (fs::exists(dir / "vocab.json") || !fs::exists(dir / "tokenizer.json")) {
    const fs::path vpath = dir / "vocab.json", mpath = dir / "merges.txt";
    BpeModel::Vocab vocab = parse_vocab(parse_json(load("vocab.json"), vpath), vpath);
    std::string mtext = load("merges.txt");
    auto lines = split_lines(mtext);
    BpeModel::Merges merges;
    std::vector<std::size_t> line_of;
    for (std::size_t i = 0; i < lines.size(); ++i) {
      std::string_view line = lines[i];
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.starts_with("#version") || (line.empty() && i + 1 == lines.size())) continue;
      std::size_t sp = line.find(' ');
      if (sp == 0 || sp == std::string_view::npos || sp + 1 == line.size() || line.find(' ', sp + 1) != std::string_view::npos)
        throw DataError(cat(mpath.string(), ":", i + 1, ": expected two tokens separated by one space, got \"", line, "\""));
      merges.emplace_back(line.substr(0, sp), line.substr(sp + 1));
      line_of.push_back(i + 1);
    }
    im->bpe = BpeModel(std::move(vocab), merges, [&](std::size_t k) { return cat(mpath.string(), ":", line_of[k]); });
  } else {  // transformers 5 saves tokenizer.json only
    const fs::path tpath = dir / "tokenizer.json";
    const json& model = tj.contains("model") ? tj["model"] : json();
    if (!model.is_object() || model.value("type", "") != "BPE" || !model.contains("vocab") || !model.contains("merges") ||
        !model["merges"].is_array())
      throw DataError(cat(tpath.string(), ": \"model\" is not a BPE model with vocab and merges"));
    if (model.contains("end_of_word_suffix") && model["end_of_word_suffix"] != "</w>")
      throw DataError(cat(tpath.string(), ": end_of_word_suffix ", model["end_of_word_suffix"].dump(), " is not CLIP's \"</w>\""));
    BpeModel::Merges merges;
    for (std::size_t k = 0; k < model["merges"].size(); ++k) {
      const json& m = model["merges"][k];
      std::string a, b;
      if (m.is_string()) {
        std::string s = m.get<std::string>();
        std::size_t sp = s.find(' ');
        if (sp != std::string::npos && sp > 0 && sp + 1 < s.size() && s.find(' ', sp + 1) == std::string::npos) {
          a = s.substr(0, sp);
          b = s.substr(sp + 1);
        }
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        a = m[0].get<std::string>(), b = m[1].get<std::string>();
      }
      if (a.empty() || b.empty()) throw DataError(cat(tpath.string(), ": model.merges[", k, "] is not two tokens: ", m.dump()));
      merges.emplace_back(std::move(a), std::move(b));
    }
    im->bpe = BpeModel(parse_vocab(model["vocab"], tpath), merges,
                       [&](std::size_t k) { return cat(tpath.string(), ": model.merges[", k, "]"); });
  }
  json cfg = optional_json("tokenizer_config.json"), stm = optional_json("special_tokens_map.json");
  try {
    load_specials(*im, cfg, stm, tj, dir);
  } catch (const json::exception& e) {  // a field of the wrong type
    throw DataError(cat("read special tokens of ", dir, ": ", e.what()));
  } catch (const std::logic_error& e) {  // an added_tokens_decoder key that is not a number
    throw DataError(cat("read special tokens of ", dir, ": ", e.what()));
  }
  im->content_hash = checksum::of_bytes(hashes);
  return make_tokenizer(std::move(im));
}

ClipTokenizer ClipTokenizer::from_open_clip_merges(const fs::path& gz, Flavor flavor) {
  std::string text = read_gzip(gz);
  try {
    decode_utf8(text);
  } catch (const DataError& e) {
    throw DataError(cat("read ", gz, ": ", e.what()));
  }
  auto lines = split_lines(text);
  if (lines.size() < kOpenClipMerges + 1)
    throw DataError(cat("read ", gz, ": ", lines.size() - 1, " merge lines, open_clip's vocabulary needs ", kOpenClipMerges));
  const auto& alpha = byte_alphabet();
  std::vector<std::string> tokens;  // in id order; a repeated token keeps its last id, as dict(zip()) does
  for (int k = 0; k < 256; ++k) tokens.push_back(encode_utf8(std::u32string(1, alpha.of[alpha.order[k]])));
  for (int k = 0; k < 256; ++k) tokens.push_back(tokens[k] + "</w>");
  BpeModel::Merges merges;
  for (std::size_t i = 1; i <= kOpenClipMerges; ++i) {
    std::u32string line = decode_utf8(lines[i]);
    std::vector<std::string> parts;  // str.split(): runs of Python whitespace
    for (std::size_t b = 0; b < line.size();) {
      if (is_py_space(line[b])) {
        ++b;
        continue;
      }
      std::size_t e = b;
      while (e < line.size() && !is_py_space(line[e])) ++e;
      parts.push_back(encode_utf8(line.substr(b, e - b)));
      b = e;
    }
    if (parts.size() != 2)
      throw DataError(cat(gz.string(), ":", i + 1, ": expected two tokens, got \"", lines[i], "\""));
    tokens.push_back(parts[0] + parts[1]);
    merges.emplace_back(std::move(parts[0]), std::move(parts[1]));
  }
  tokens.push_back("<start_of_text>");
  tokens.push_back("<end_of_text>");
  BpeModel::Vocab vocab;
  for (std::size_t k = 0; k < tokens.size(); ++k) vocab.insert_or_assign(tokens[k], static_cast<int64_t>(k));

  auto im = std::make_unique<Impl>();
  im->flavor = flavor;
  im->bpe = BpeModel(std::move(vocab), merges, [&](std::size_t k) { return cat(gz.string(), ":", k + 2); });
  im->bos = im->bpe.id("<start_of_text>");
  im->eos = im->bpe.id("<end_of_text>");
  if (flavor == Flavor::OpenClip) {
    im->regex_specials = {{U"<start_of_text>", im->bos}, {U"<end_of_text>", im->eos}};
    im->pad = 0;
  } else {
    im->added = {{U"<start_of_text>", im->bos, false}, {U"<end_of_text>", im->eos, false}};
    im->pad = im->eos;
  }
  im->content_hash = checksum::of_file(gz);
  return make_tokenizer(std::move(im));
}

}  // namespace mcm::tokenizer
