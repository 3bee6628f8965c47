// A tiny MLP as plain parameter tensors, for the reducer tests: a branch some ranks use, a
// parameter nobody uses, and a reference "all-reduce the whole gradient" to compare with.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "dist/communicator.hpp"

namespace mcm::test {

struct TinyNet {
  std::vector<std::pair<std::string, torch::Tensor>> params;  // registration order
  torch::Tensor& at(const std::string& name) {
    for (auto& [n, t] : params)
      if (n == name) return t;
    throw std::out_of_range(name);
  }
  /// Mean squared output; `branch` adds the branch head.
  torch::Tensor loss(const torch::Tensor& x, bool branch) {
    auto h = torch::tanh(torch::addmm(at("fc1.bias"), x, at("fc1.weight").t()));
    h = torch::tanh(torch::addmm(at("fc2.bias"), h, at("fc2.weight").t()));
    auto out = h.mm(at("head.weight").t());
    if (branch) out = out + h.mm(at("branch.weight").t()).sum(1, true);
    return out.pow(2).mean();
  }
  void zero_grad() {
    for (auto& [n, t] : params) t.mutable_grad() = torch::Tensor();
  }
};

/// The same weights on every rank and for every call with the same seed.
inline TinyNet make_tiny_net(torch::Device dev, uint64_t seed = 1) {
  torch::manual_seed(seed);
  TinyNet n;
  auto p = [&](const char* name, std::vector<int64_t> shape) {
    n.params.emplace_back(name, (torch::randn(shape) * 0.3).to(dev).requires_grad_());
  };
  p("fc1.weight", {32, 8});
  p("fc1.bias", {32});
  p("unused.weight", {4, 4});  // no rank uses it
  p("fc2.weight", {32, 32});
  p("fc2.bias", {32});
  p("branch.weight", {3, 32});  // only some ranks use it
  p("head.weight", {1, 32});
  return n;
}

/// Per-rank input: different data on every rank.
inline torch::Tensor rank_input(int rank, int micro, torch::Device dev) {
  torch::manual_seed(1000 + 10 * rank + micro);
  return torch::randn({6, 8}).to(dev);
}

/// Reference: every gradient (zeros where undefined) all-reduced (averaged) on its own.
inline std::vector<torch::Tensor> averaged_grads(TinyNet& net, dist::Communicator& comm) {
  std::vector<torch::Tensor> out;
  for (auto& [name, t] : net.params) {
    auto g = t.grad().defined() ? t.grad().clone() : torch::zeros_like(t);
    comm.allreduce(g, dist::ReduceOp::kAvg, "reference " + name);
    out.push_back(g);
  }
  return out;
}

}  // namespace mcm::test
