// The layers whose forward or backward departs from the reference's op sequence for speed give
// the reference's values: GEGLU's gradient bit for bit, the temporal convolution (run as a Conv2d)
// to rounding, with the same dropout draws.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "models/layers.hpp"

using namespace mcm::models;
namespace F = torch::nn::functional;

namespace {
double max_err(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }
}  // namespace

TEST(Layers, GegluGradientIsAutogradsBitForBit) {
  torch::manual_seed(0);
  layers::Geglu geglu(24, 40);
  auto params = geglu->named_parameters();
  const auto w = params["proj.weight"], b = params["proj.bias"];
  auto x = torch::randn({3, 7, 24}, torch::requires_grad());
  auto gy = torch::randn({3, 7, 40});

  auto y = geglu(x);
  y.backward(gy);
  auto gx = x.grad().clone(), gw = w.grad().clone(), gb = b.grad().clone();
  x.mutable_grad().reset();
  w.mutable_grad().reset();
  b.mutable_grad().reset();

  auto parts = torch::linear(x, w, b).chunk(2, -1);  // the reference: autograd through chunk, gelu, mul
  auto ref = parts[0] * torch::gelu(parts[1]);
  ref.backward(gy);
  EXPECT_TRUE(torch::equal(y, ref));
  EXPECT_TRUE(torch::equal(gx, x.grad()));
  EXPECT_TRUE(torch::equal(gw, w.grad()));
  EXPECT_TRUE(torch::equal(gb, b.grad()));
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(geglu(x), ref));
}

TEST(Layers, TemporalConvMatchesConv3dWithTheSameDropout) {
  const int64_t B = 2, Fr = 5, C = 16, H = 3, W = 4;
  torch::manual_seed(0);
  layers::TemporalConvLayer layer(C, 4, 0.1);
  auto params = layer->named_parameters();
  {
    torch::NoGradGuard g;  // conv4 starts at zero (identity layer); give it weights to test
    params["conv4.3.weight"].normal_(0, 0.1);
    params["conv4.3.bias"].normal_(0, 0.1);
  }
  auto x = torch::randn({B * Fr, C, H, W}, torch::requires_grad());
  auto gy = torch::randn({B * Fr, C, H, W});
  for (bool train : {false, true}) {
    layer->train(train);
    torch::manual_seed(1);
    auto y = layer(x, Fr);
    y.backward(gy);
    std::map<std::string, torch::Tensor> grads{{"x", x.grad().clone()}};
    for (auto& p : layer->named_parameters()) grads[p.key()] = p.value().grad().clone();
    x.mutable_grad().reset();
    layer->zero_grad();

    // The reference (diffusers' TemporalConvLayer): the stages on the [B, C, F, H, W] view, Conv3d.
    torch::manual_seed(1);
    auto h = x.reshape({B, Fr, C, H, W}).permute({0, 2, 1, 3, 4});
    auto identity = h;
    for (int i = 1; i <= 4; ++i) {
      const std::string s = "conv" + std::to_string(i) + ".";
      const std::string conv = s + (i == 1 ? "2." : "3.");
      h = torch::silu(F::group_norm(h, F::GroupNormFuncOptions(4).weight(params[s + "0.weight"]).bias(params[s + "0.bias"]).eps(1e-5)));
      if (i > 1) h = F::dropout(h, F::DropoutFuncOptions().p(0.1).training(train));
      h = F::conv3d(h, params[conv + "weight"], F::Conv3dFuncOptions().bias(params[conv + "bias"]).padding({1, 0, 0}));
    }
    auto ref = (identity + h).permute({0, 2, 1, 3, 4}).reshape({B * Fr, C, H, W});
    ref.backward(gy);
    EXPECT_LE(max_err(y, ref), 1e-5) << "train " << train;
    EXPECT_LE(max_err(grads["x"], x.grad()), 1e-5) << "train " << train;
    for (auto& p : layer->named_parameters())
      EXPECT_LE(max_err(grads[p.key()], p.value().grad()), 1e-4) << p.key() << " train " << train;
    x.mutable_grad().reset();
    layer->zero_grad();
  }
}
