// The embedded-default encoders and the factories that choose an encoder from the config.
#include "models/encoders.hpp"

#include <torch/version.h>

#include <cmath>
#include <fstream>
#include <limits>

#include "core/checksum.hpp"
#include "models/autoencoder_kl.hpp"
#include "models/clip_text.hpp"
#include "core/error.hpp"

namespace mcm::models {

PixelShuffleAutoencoder::PixelShuffleAutoencoder(int64_t factor, double scaling) : factor_(factor), scaling_(scaling) {
  require<ConfigError>(factor >= 1, "pixel_shuffle factor ", factor, " must be >= 1");
}

torch::Tensor FrameAutoencoder::encode(const torch::Tensor& frames, uint64_t noise_seed) {
  std::vector<uint64_t> seeds(static_cast<size_t>(frames.size(0)));
  for (size_t i = 0; i < seeds.size(); ++i) seeds[i] = noise_seed + i;
  return encode_frames(frames, seeds);
}

// Exact and cheap: stays on the CPU in float32 whatever the rank's device.
torch::Tensor PixelShuffleAutoencoder::encode_frames(const torch::Tensor& x, const std::vector<uint64_t>&) {
  require<DataError>(x.dim() == 4 && x.size(1) == 3 && x.size(2) % factor_ == 0 && x.size(3) % factor_ == 0,
                     "pixel_shuffle encode: expected [N,3,H,W] with H,W divisible by ", factor_, ", got ", x.sizes());
  return torch::pixel_unshuffle(x, factor_) * scaling_;
}

torch::Tensor PixelShuffleAutoencoder::decode(const torch::Tensor& z) {
  require<DataError>(z.dim() == 4 && z.size(1) == latent_channels(), "pixel_shuffle decode: expected [N,",
                     latent_channels(), ",h,w], got ", z.sizes());
  return torch::pixel_shuffle(z / scaling_, factor_);
}

torch::Tensor PixelShuffleAutoencoder::decode_differentiable(const torch::Tensor& z) { return decode(z); }

std::string PixelShuffleAutoencoder::name() const { return cat("pixel_shuffle(f=", factor_, ")"); }

WordTextEncoder::WordTextEncoder(const std::filesystem::path& vocab, int64_t max_length, int64_t dim, int64_t seed)
    : max_length_(max_length), dim_(dim), seed_(seed) {
  std::ifstream in(vocab);
  require<IoError>(static_cast<bool>(in), "text encoder: open vocabulary ", vocab, " (written by `mcm synth`)");
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    require<DataError>(!ids_.count(line), "text encoder: vocabulary ", vocab, " repeats \"", line, "\"");
    ids_[line] = static_cast<int64_t>(words_.size());
    words_.push_back(line);
  }
  require<DataError>(words_.size() >= 4 && words_[0] == "<pad>" && words_[1] == "<bos>" && words_[2] == "<eos>" &&
                         words_[3] == "<unk>",
                     "text encoder: vocabulary ", vocab, " must start with <pad>, <bos>, <eos>, <unk>");
  vocab_hash_ = checksum::of_file(vocab);
  torch::NoGradGuard ng;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed));
  table_ = at::randn({static_cast<int64_t>(words_.size()), dim}, gen, torch::kFloat32);
  table_[0].zero_();
  auto pos = torch::arange(max_length, torch::kFloat32).unsqueeze(1);
  auto i = torch::arange(0, dim, 2, torch::kFloat32);
  auto freq = torch::exp(-std::log(10000.0) * i / static_cast<double>(dim));
  positions_ = torch::zeros({max_length, dim});
  positions_.index_put_({torch::indexing::Slice(), torch::indexing::Slice(0, torch::indexing::None, 2)}, torch::sin(pos * freq));
  auto cosv = torch::cos(pos * freq);
  positions_.index_put_({torch::indexing::Slice(), torch::indexing::Slice(1, torch::indexing::None, 2)},
                        cosv.index({torch::indexing::Slice(), torch::indexing::Slice(0, dim / 2)}));
}

std::vector<int64_t> WordTextEncoder::tokenize(const std::string& caption) const {
  std::vector<int64_t> ids{1};
  std::string word;
  auto flush = [&] {
    if (word.empty()) return;
    auto it = ids_.find(word);
    ids.push_back(it == ids_.end() ? 3 : it->second);
    word.clear();
  };
  for (unsigned char c : caption) {
    if (std::isalnum(c)) word += static_cast<char>(std::tolower(c));
    else flush();
  }
  flush();
  if (static_cast<int64_t>(ids.size()) > max_length_ - 1) ids.resize(max_length_ - 1);
  ids.push_back(2);
  ids.resize(max_length_, 0);
  return ids;
}

torch::Tensor WordTextEncoder::encode(const std::vector<std::string>& captions) {
  torch::NoGradGuard ng;
  std::vector<int64_t> flat;
  for (auto& c : captions) {
    auto t = tokenize(c);
    flat.insert(flat.end(), t.begin(), t.end());
  }
  auto ids = torch::tensor(flat, torch::kInt64).view({static_cast<int64_t>(captions.size()), max_length_});
  auto h = table_.index_select(0, ids.flatten()).view({ids.size(0), max_length_, dim_}) + positions_;
  return torch::layer_norm(h, {dim_});
}

std::string WordTextEncoder::name() const { return cat("word(L=", max_length_, ",D=", dim_, ",seed=", seed_, ")"); }

std::unique_ptr<FrameAutoencoder> make_autoencoder(const config::AutoencoderSection& cfg) {
  if (cfg.kind == "pixel_shuffle") return std::make_unique<PixelShuffleAutoencoder>(cfg.factor, cfg.scaling_factor);
  if (cfg.kind == "autoencoder_kl") {
    // No slicing of its own: prep hands it prep.encode_batch frames at a time.
    return std::make_unique<VaeFrameAutoencoder>(
        load_autoencoder_kl(cfg.path), cfg.mode == "sample" ? VaeFrameAutoencoder::Mode::Sample : VaeFrameAutoencoder::Mode::Mean,
        std::numeric_limits<int64_t>::max(), cfg.path);
  }
  throw ConfigError(cat("models.autoencoder.kind = \"", cfg.kind, "\": not available"));
}

std::unique_ptr<TextEncoder> make_text_encoder(const config::TextEncoderSection& cfg, const std::filesystem::path& run_dir) {
  if (cfg.kind == "word") {
    std::filesystem::path vocab = cfg.vocab.empty() ? run_dir / "data" / "vocab.txt" : std::filesystem::path(cfg.vocab);
    return std::make_unique<WordTextEncoder>(vocab, cfg.max_length, cfg.dim, cfg.seed);
  }
  if (cfg.kind == "clip") {
    std::filesystem::path model = std::filesystem::path(cfg.path).lexically_normal();
    if (model.filename().empty()) model = model.parent_path();  // "…/text_encoder/"
    const std::filesystem::path tok = cfg.tokenizer.empty() ? model.parent_path() / "tokenizer" : std::filesystem::path(cfg.tokenizer);
    return std::make_unique<ClipTextEncoder>(model, tok);
  }
  throw ConfigError(cat("models.text_encoder.kind = \"", cfg.kind, "\": not available"));
}

std::string torch_version() { return cat("LibTorch ", TORCH_VERSION); }

}  // namespace mcm::models
