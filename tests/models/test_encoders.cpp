// Embedded-default encoders: the pixel-shuffle autoencoder is exact; the word text encoder is
// deterministic, pads/truncates to max_length and refuses bad vocabularies.
#include <torch/torch.h>

#include "core/error.hpp"
#include "models/encoders.hpp"
#include "../test_util.hpp"

using namespace mcm;

TEST(PixelShuffle, ExactRoundTrip) {
  torch::manual_seed(0);
  models::PixelShuffleAutoencoder ae(4, 0.5);
  auto x = torch::rand({3, 3, 32, 32}) * 2 - 1;
  auto z = ae.encode(x);
  EXPECT_EQ(z.sizes(), (std::vector<int64_t>{3, 48, 8, 8}));
  EXPECT_TRUE(torch::equal(ae.decode(z), x));
  // Channel layout matches torch.nn.functional.pixel_unshuffle: z[c*16 + i*4 + j, y, x] = x[c, 4y+i, 4x+j] * s.
  EXPECT_FLOAT_EQ(z[1][2 * 16 + 1 * 4 + 3][5][6].item<float>(), x[1][2][4 * 5 + 1][4 * 6 + 3].item<float>() * 0.5f);
  test::expect_error<DataError>([&] { ae.encode(torch::zeros({1, 3, 30, 32})); }, {"divisible by 4"});
}

namespace {
std::filesystem::path vocab(const std::filesystem::path& d) {
  test::write_text(d / "vocab.txt", "<pad>\n<bos>\n<eos>\n<unk>\na\nred\ncircle\nmoves\nleft\n");
  return d / "vocab.txt";
}
}  // namespace

TEST(WordTextEncoder, TokenizePadTruncate) {
  auto d = test::scratch();
  models::WordTextEncoder te(vocab(d), 6, 8, 7);
  EXPECT_EQ(te.tokenize("A red CIRCLE!"), (std::vector<int64_t>{1, 4, 5, 6, 2, 0}));
  EXPECT_EQ(te.tokenize("a red circle moves left quickly"), (std::vector<int64_t>{1, 4, 5, 6, 7, 2}));
  EXPECT_EQ(te.tokenize("blue"), (std::vector<int64_t>{1, 3, 2, 0, 0, 0}));
}

TEST(WordTextEncoder, DeterministicAndSeeded) {
  auto d = test::scratch();
  models::WordTextEncoder a(vocab(d), 6, 8, 7), b(vocab(d), 6, 8, 7), c(vocab(d), 6, 8, 8);
  auto ea = a.encode({"a red circle", "moves left"});
  EXPECT_EQ(ea.sizes(), (std::vector<int64_t>{2, 6, 8}));
  EXPECT_TRUE(torch::equal(ea, b.encode({"a red circle", "moves left"})));
  EXPECT_FALSE(torch::equal(ea, c.encode({"a red circle", "moves left"})));
  EXPECT_FALSE(torch::equal(ea[0], ea[1]));
}

TEST(WordTextEncoder, BadVocabularies) {
  auto d = test::scratch();
  test::expect_error<IoError>([&] { models::WordTextEncoder(d / "none.txt", 6, 8, 7); }, {"none.txt", "mcm synth"});
  test::write_text(d / "v.txt", "a\nb\n");
  test::expect_error<DataError>([&] { models::WordTextEncoder(d / "v.txt", 6, 8, 7); }, {"v.txt", "must start with <pad>"});
  test::write_text(d / "w.txt", "<pad>\n<bos>\n<eos>\n<unk>\na\na\n");
  test::expect_error<DataError>([&] { models::WordTextEncoder(d / "w.txt", 6, 8, 7); }, {"repeats \"a\""});
}

TEST(Factories, ChooseByConfig) {
  config::AutoencoderSection ae;
  EXPECT_EQ(models::make_autoencoder(ae)->latent_channels(), 48);
  ae.kind = "vae";
  test::expect_error<ConfigError>([&] { models::make_autoencoder(ae); }, {"models.autoencoder.kind", "vae"});
}
