#include "eval/clip_score.hpp"

#include <torch/script.h>

#include "core/checksum.hpp"
#include "core/error.hpp"
#include "tokenizer/clip_tokenizer.hpp"

namespace mcm::eval {

struct ClipScorer::Impl {
  std::filesystem::path model_file, vocab_file;
  std::string model_checksum;
  torch::Device device{torch::kCPU};
  torch::jit::Module module;
  std::unique_ptr<tokenizer::ClipTokenizer> tok;
};

ClipScorer::ClipScorer(const std::filesystem::path& model, const std::filesystem::path& vocab, torch::Device device,
                       int64_t resolution)
    : impl_(std::make_unique<Impl>()), resolution_(resolution) {
  require<IoError>(std::filesystem::is_regular_file(model), "CLIP model ", model, " not found");
  require<IoError>(std::filesystem::is_regular_file(vocab), "CLIP vocabulary ", vocab,
                   " not found (bpe_simple_vocab_16e6.txt.gz, shipped with openai/CLIP and open_clip)");
  impl_->model_file = model;
  impl_->vocab_file = vocab;
  impl_->device = device;
  impl_->model_checksum = checksum::of_file(model);
  try {
    impl_->module = torch::jit::load(model.string(), device);
  } catch (const c10::Error& e) {
    throw IoError(cat("CLIP model ", model, ": not a TorchScript file this LibTorch can load: ", e.what_without_backtrace()));
  }
  impl_->module.eval();
  for (const char* m : {"encode_image", "encode_text"})
    require<DataError>(impl_->module.find_method(m).has_value(), "CLIP model ", model, " has no method ", m,
                       " (OpenAI's CLIP interface: encode_image, encode_text)");
  if (impl_->module.hasattr("visual")) {
    auto visual = impl_->module.attr("visual").toModule();
    if (visual.hasattr("input_resolution")) resolution_ = visual.attr("input_resolution").toInt();
  }
  require<DataError>(resolution_ > 0, "CLIP model ", model, ": input resolution ", resolution_);
  impl_->tok = std::make_unique<tokenizer::ClipTokenizer>(tokenizer::ClipTokenizer::from_open_clip_merges(vocab));
}

ClipScorer::~ClipScorer() = default;

torch::Tensor ClipScorer::preprocess(const torch::Tensor& frames) const {
  namespace F = torch::nn::functional;
  require<DataError>(frames.dim() == 4 && frames.size(3) == 3 && frames.scalar_type() == torch::kUInt8, "CLIP score: frames ",
                     frames.sizes(), " of ", frames.scalar_type(), ", expected uint8 [B, H, W, 3]");
  auto x = frames.permute({0, 3, 1, 2}).to(torch::kFloat32) / 255.0;
  const int64_t h = x.size(2), w = x.size(3), r = resolution_;
  // The shorter side to R, the other scaled alike (int(R * long / short), as torchvision's Resize).
  const int64_t nh = h <= w ? r : r * h / w, nw = h <= w ? r * w / h : r;
  x = F::interpolate(x, F::InterpolateFuncOptions()
                            .size(std::vector<int64_t>{nh, nw})
                            .mode(torch::kBicubic)
                            .align_corners(false)
                            .antialias(true));
  const int64_t top = (nh - r + 1) / 2, left = (nw - r + 1) / 2;  // round((n - R) / 2), torchvision's CenterCrop
  x = x.slice(2, top, top + r).slice(3, left, left + r);
  const auto mean = torch::tensor({0.48145466, 0.4578275, 0.40821073}).view({1, 3, 1, 1});
  const auto std = torch::tensor({0.26862954, 0.26130258, 0.27577711}).view({1, 3, 1, 1});
  return ((x - mean) / std).contiguous();
}

torch::Tensor ClipScorer::scores(const torch::Tensor& videos, const std::vector<std::string>& prompts) {
  require<DataError>(videos.dim() == 5 && videos.size(4) == 3 && videos.scalar_type() == torch::kUInt8, "CLIP score: videos ",
                     videos.sizes(), " of ", videos.scalar_type(), ", expected uint8 [N, T, H, W, 3]");
  const int64_t n = videos.size(0), t = videos.size(1);
  require<DataError>(static_cast<int64_t>(prompts.size()) == n, "CLIP score: ", n, " videos and ", prompts.size(), " prompts");
  torch::NoGradGuard ng;
  std::vector<int64_t> ids;
  for (const auto& p : prompts) {
    auto row = impl_->tok->tokenize(p);
    ids.insert(ids.end(), row.begin(), row.end());
  }
  const int64_t ctx = impl_->tok->context_length();
  auto tokens = torch::tensor(ids, torch::kInt64).view({n, ctx}).to(impl_->device);
  auto images = preprocess(videos.reshape({n * t, videos.size(2), videos.size(3), 3}));
  torch::Tensor ei, et;
  try {
    // The model's own dtype: OpenAI's archive computes in fp16 on the GPU.
    ei = impl_->module.get_method("encode_image")({images.to(impl_->device)}).toTensor().to(torch::kCPU, torch::kFloat64);
    et = impl_->module.get_method("encode_text")({tokens}).toTensor().to(torch::kCPU, torch::kFloat64);
  } catch (const c10::Error& e) {
    throw DataError(cat("CLIP model ", impl_->model_file, ": ", e.what_without_backtrace()));
  }
  require<DataError>(ei.dim() == 2 && et.dim() == 2 && ei.size(0) == n * t && et.size(0) == n && ei.size(1) == et.size(1),
                     "CLIP model ", impl_->model_file, ": image embeddings ", ei.sizes(), " and text embeddings ", et.sizes(),
                     " for ", n * t, " frames and ", n, " prompts");
  ei = ei / ei.norm(2, 1, true);
  et = et / et.norm(2, 1, true);
  auto cos = (ei.view({n, t, -1}) * et.view({n, 1, -1})).sum(2);  // [N, T]
  return 100.0 * cos.mean(1);
}

nlohmann::json ClipScorer::protocol() const {
  return {{"model", impl_->model_file.string()}, {"model_checksum", impl_->model_checksum},
          {"vocab", impl_->vocab_file.string()}, {"vocab_checksum", impl_->tok->content_hash()},
          {"resolution", resolution_}, {"context_length", impl_->tok->context_length()},
          {"score", "100 x cos(image, text) per frame, averaged over frames, then over clips"},
          {"frames", "all"}, {"clamped", "max(mean, 0) as torchmetrics' CLIPScore"}};
}

}  // namespace mcm::eval
