// Parity of ClipTokenizer with open_clip's SimpleTokenizer and transformers' CLIPTokenizer: the
// golden ids come from make_golden.py beside this file, run with the project venv's interpreter.
// Also the loaders' error messages, truncation, thread safety and throughput.
#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "tokenizer/clip_tokenizer.hpp"
#include "tokenizer/text_clean.hpp"
#include "../golden.hpp"
#include "../test_util.hpp"

using namespace mcm;
using namespace mcm::tokenizer;
namespace fs = std::filesystem;

namespace {

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class ClipTokenizerGolden : public ::testing::Test {
 protected:
  // The generator takes seconds and every test runs in its own process (gtest_discover_tests):
  // its output is made once per oracle version and shared (tests/golden.hpp).
  void SetUp() override {
    if (golden_) return;
    dir_ = test::golden_dir("tests/tokenizer/make_golden.py");
    golden_ = new nlohmann::json(nlohmann::json::parse(read(dir_ / "golden.json")));
  }
  static void TearDownTestSuite() {
    delete golden_;
    golden_ = nullptr;
  }
  static const nlohmann::json& cases() { return golden_->at("cases"); }

  /// Tokenizes every golden string and compares with `key`; reports the first differences.
  static void expect_parity(const ClipTokenizer& tok, const std::string& key) {
    int checked = 0, wrong = 0;
    for (auto& c : cases()) {
      if (!c.contains(key)) continue;
      ++checked;
      std::string text = c["text"].get<std::string>();
      auto want = c[key].get<std::vector<int64_t>>();
      auto got = tok.tokenize(text);
      if (got != want && ++wrong <= 10)
        ADD_FAILURE() << key << " mismatch for " << nlohmann::json(text).dump() << "\n  want " << nlohmann::json(want).dump()
                      << "\n  got  " << nlohmann::json(got).dump();
    }
    std::printf("[ parity ] %s: %d strings, %d identical\n", key.c_str(), checked, checked - wrong);
    EXPECT_EQ(wrong, 0);
    EXPECT_GE(checked, key == "transformers_pad" ? 200 : 1000);
  }
  static fs::path dir_;
  static nlohmann::json* golden_;
};
fs::path ClipTokenizerGolden::dir_;
nlohmann::json* ClipTokenizerGolden::golden_ = nullptr;

}  // namespace

TEST_F(ClipTokenizerGolden, OpenClipFromMergesGz) {
  auto tok = ClipTokenizer::from_open_clip_merges(dir_ / "bpe_simple_vocab_16e6.txt.gz");
  EXPECT_EQ(tok.vocab_size(), 49408);
  EXPECT_EQ(tok.bos_id(), 49406);
  EXPECT_EQ(tok.eos_id(), 49407);
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.context_length(), 77);
  EXPECT_EQ(tok.encode("a photo of a cat"), (std::vector<int64_t>{320, 1125, 539, 320, 2368}));
  expect_parity(tok, "open_clip");
  std::printf("[ parity ] %zu strings excluded by the generator (ftfy fix_encoding)\n", golden_->at("excluded").size());
}

TEST_F(ClipTokenizerGolden, TransformersFromFolder) {
  auto tok = ClipTokenizer::from_folder(dir_ / "hf");
  EXPECT_EQ(tok.flavor(), Flavor::Transformers);
  EXPECT_EQ(tok.pad_id(), 49407);
  EXPECT_EQ(tok.context_length(), 77);
  expect_parity(tok, "transformers");
}

TEST_F(ClipTokenizerGolden, TransformersFromTokenizerJsonOnly) {  // what transformers 5's save_pretrained writes
  auto d = test::scratch();
  for (auto f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(dir_ / "hf" / f, d / f);
  auto tok = ClipTokenizer::from_folder(d);
  expect_parity(tok, "transformers");
  EXPECT_NE(tok.content_hash(), ClipTokenizer::from_folder(dir_ / "hf").content_hash());
}

TEST_F(ClipTokenizerGolden, TransformersPadTokenAndNormalizedSpecials) {
  auto tok = ClipTokenizer::from_folder(dir_ / "hf_pad");
  EXPECT_EQ(tok.pad_id(), 0);  // "!" from tokenizer_config.json
  expect_parity(tok, "transformers_pad");
}

TEST_F(ClipTokenizerGolden, CompiledTablesMatchPython) {
  auto& html5 = golden_->at("html5");
  ASSERT_EQ(detail::kHtml5_size, html5.size());
  for (std::size_t i = 0; i < detail::kHtml5_size; ++i) EXPECT_EQ(html5.at(detail::kHtml5[i].name), detail::kHtml5[i].value);
  std::size_t semicolon = 0;
  for (std::size_t i = 0; i < detail::kHtml5_size; ++i) semicolon += std::string_view(detail::kHtml5[i].name).ends_with(';');
  auto& ftfy = golden_->at("ftfy_entities");
  EXPECT_EQ(ftfy.size(), semicolon + detail::kFtfyUpperEntities_size);
  for (std::size_t i = 0; i < detail::kFtfyUpperEntities_size; ++i)
    EXPECT_EQ(ftfy.at(detail::kFtfyUpperEntities[i].name), detail::kFtfyUpperEntities[i].value);
}

TEST_F(ClipTokenizerGolden, HashesTruncationAndThreads) {
  auto a = ClipTokenizer::from_open_clip_merges(dir_ / "bpe_simple_vocab_16e6.txt.gz");
  auto b = ClipTokenizer::from_open_clip_merges(dir_ / "bpe_simple_vocab_16e6.txt.gz");
  EXPECT_EQ(a.content_hash(), b.content_hash());
  EXPECT_TRUE(a.content_hash().starts_with("xxh3:"));
  std::string long_text;
  for (int i = 0; i < 300; ++i) long_text += "word ";
  auto ids = a.tokenize(long_text);
  ASSERT_EQ(ids.size(), 77u);
  EXPECT_EQ(ids.front(), 49406);
  EXPECT_EQ(ids.back(), 49407);
  EXPECT_EQ(a.encode(long_text).size(), 300u);
  // Concurrent callers share the BPE cache.
  std::vector<std::vector<int64_t>> want;
  for (auto& c : cases()) want.push_back(c["open_clip"].get<std::vector<int64_t>>());
  auto tok = ClipTokenizer::from_open_clip_merges(dir_ / "bpe_simple_vocab_16e6.txt.gz");
  std::atomic<int> wrong{0};
  auto work = [&](std::size_t start) {
    for (std::size_t i = start; i < want.size(); i += 1) wrong += tok.tokenize(cases()[i]["text"].get<std::string>()) != want[i];
  };
  std::thread t1(work, 0), t2(work, want.size() / 2);
  t1.join();
  t2.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(ClipTokenizerGolden, Throughput) {
  std::vector<std::string> captions;
  for (auto& c : cases()) captions.push_back(c["text"].get<std::string>());
  for (Flavor f : {Flavor::OpenClip, Flavor::Transformers}) {
    auto tok = f == Flavor::OpenClip ? ClipTokenizer::from_open_clip_merges(dir_ / "bpe_simple_vocab_16e6.txt.gz")
                                     : ClipTokenizer::from_folder(dir_ / "hf");
    auto pass = [&] {
      auto t0 = std::chrono::steady_clock::now();
      std::size_t n = 0;
      for (auto& c : captions) n += tok.tokenize(c).size() == 77;
      return n / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    double cold = pass(), warm = pass();
    std::printf("[ speed  ] %s: %.0f strings/s with an empty BPE cache, %.0f warm (%zu golden strings, one thread)\n",
                flavor_name(f), cold, warm, captions.size());
    EXPECT_GT(cold, 2000.0);  // loose: shared CI machines; measured far above
  }
}

// ---- errors --------------------------------------------------------------------------------

TEST_F(ClipTokenizerGolden, InvalidUtf8IsRefused) {
  auto tok = ClipTokenizer::from_folder(dir_ / "hf");
  test::expect_error<DataError>([&] { tok.tokenize("ok \xff"); }, {"invalid UTF-8", "byte 3", "0xFF"});
  test::expect_error<DataError>([&] { tok.encode("\xc0\xaf"); }, {"invalid UTF-8", "byte 0"});          // overlong '/'
  test::expect_error<DataError>([&] { tok.encode("a\xed\xa0\x80"); }, {"invalid UTF-8", "byte 1"});     // surrogate
  test::expect_error<DataError>([&] { tok.encode("\xe2\x82"); }, {"invalid UTF-8", "byte 0"});          // truncated
  test::expect_error<DataError>([&] { tok.encode("\xf4\x90\x80\x80"); }, {"invalid UTF-8", "byte 0"});  // > U+10FFFF
}

TEST_F(ClipTokenizerGolden, FolderErrorsNameFileAndLine) {
  auto d = test::scratch();
  test::expect_error<IoError>([&] { ClipTokenizer::from_folder(d / "nope"); }, {"nope", "not a directory"});
  test::write_text(d / "vocab.json", read(dir_ / "hf" / "vocab.json"));
  test::expect_error<IoError>([&] { ClipTokenizer::from_folder(d); }, {"merges.txt", "No such file"});

  test::write_text(d / "merges.txt", "#version: 0.2\ni n\nt h e\n");
  test::expect_error<DataError>([&] { ClipTokenizer::from_folder(d); }, {"merges.txt:3:", "two tokens", "t h e"});
  test::write_text(d / "merges.txt", "#version: 0.2\ni n\n\nt h\n");
  test::expect_error<DataError>([&] { ClipTokenizer::from_folder(d); }, {"merges.txt:3:", "two tokens"});

  // A small vocabulary: the 512 byte tokens and "in"; merging "t h" gives "th", which is missing.
  auto full = nlohmann::json::parse(read(dir_ / "hf" / "vocab.json"));
  nlohmann::json small = nlohmann::json::object();
  for (auto& [k, v] : full.items())
    if (v.get<int64_t>() < 512 || k == "in" || k == "<|startoftext|>" || k == "<|endoftext|>") small[k] = v;
  test::write_text(d / "vocab.json", small.dump());
  test::write_text(d / "merges.txt", "#version: 0.2\ni n\nt h\n");
  test::expect_error<DataError>([&] { ClipTokenizer::from_folder(d); }, {"merges.txt:3", "merge result \"th\"", "not in the vocabulary"});
  test::write_text(d / "merges.txt", "#version: 0.2\ni n\nin zz\n");
  test::expect_error<DataError>([&] { ClipTokenizer::from_folder(d); }, {"merges.txt:3", "merge part \"zz\""});
  test::write_text(d / "merges.txt", "#version: 0.2\ni n\n");
  auto tok = ClipTokenizer::from_folder(d);
  EXPECT_EQ(tok.encode("in"), (std::vector<int64_t>{small["i"].get<int64_t>(), small["n</w>"].get<int64_t>()}));
  EXPECT_EQ(tok.encode("inn"), (std::vector<int64_t>{small["in"].get<int64_t>(), small["n</w>"].get<int64_t>()}));

  test::write_text(d / "vocab.json", "{\n  \"a\": 1,\n  oops\n}\n");
  test::expect_error<DataError>([&] { ClipTokenizer::from_folder(d); }, {"vocab.json:3:", "invalid JSON"});
  test::write_text(d / "vocab.json", "{\"a\": \"x\"}");
  test::expect_error<DataError>([&] { ClipTokenizer::from_folder(d); }, {"vocab.json", "\"a\"", "integer"});
  test::write_text(d / "vocab.json", small.dump());
  test::write_text(d / "tokenizer_config.json", "{\"padding_side\": \"left\"}");
  test::expect_error<DataError>([&] { ClipTokenizer::from_folder(d); }, {"tokenizer_config.json", "padding_side"});
  test::write_text(d / "tokenizer_config.json", "{\"pad_token\": \"<pad>\"}");
  test::expect_error<DataError>([&] { ClipTokenizer::from_folder(d); }, {"tokenizer_config.json", "<pad>", "neither in the vocabulary"});
  test::write_text(d / "tokenizer_config.json", "{\"bos_token\": 5}");
  test::expect_error<DataError>([&] { ClipTokenizer::from_folder(d); }, {"tokenizer_config.json", "bos_token"});
  test::write_text(d / "tokenizer_config.json", "{\"eos_token\": {\"content\": \"<|endoftext|>\", \"normalized\": \"yes\"}}");
  test::expect_error<DataError>([&] { ClipTokenizer::from_folder(d); }, {"special tokens of", "boolean"});
  test::write_text(d / "tokenizer_config.json", "{\"model_max_length\": 16, \"pad_token\": \"!\"}");
  auto short_tok = ClipTokenizer::from_folder(d);
  EXPECT_EQ(short_tok.tokenize("").size(), 16u);
  EXPECT_EQ(short_tok.pad_id(), small["!"].get<int64_t>());
}

TEST_F(ClipTokenizerGolden, MergesGzErrors) {
  auto d = test::scratch();
  test::expect_error<IoError>([&] { ClipTokenizer::from_open_clip_merges(d / "missing.txt.gz"); }, {"missing.txt.gz", "No such file"});
  test::write_text(d / "plain.txt.gz", "not gzip at all\n");
  test::expect_error<DataError>([&] { ClipTokenizer::from_open_clip_merges(d / "plain.txt.gz"); }, {"plain.txt.gz", "not a gzip file"});
  std::string gz = read(dir_ / "bpe_simple_vocab_16e6.txt.gz");
  test::write_text(d / "cut.txt.gz", gz.substr(0, gz.size() / 2));
  test::expect_error<DataError>([&] { ClipTokenizer::from_open_clip_merges(d / "cut.txt.gz"); }, {"cut.txt.gz"});
  std::string bad = gz;
  for (std::size_t i = 100; i < 200; ++i) bad[i] = static_cast<char>(bad[i] ^ 0x5A);
  test::write_text(d / "bad.txt.gz", bad);
  test::expect_error<DataError>([&] { ClipTokenizer::from_open_clip_merges(d / "bad.txt.gz"); }, {"bad.txt.gz", "gzip"});
}
