// DiffAugment (see diff_augment.hpp).
#include "models/diff_augment.hpp"

#include "core/error.hpp"

namespace mcm::models {
namespace {

int64_t reach(int64_t side, double ratio) { return static_cast<int64_t>(static_cast<double>(side) * ratio + 0.5); }

// Rows (or columns) 0..n-1 of every image inside the clipped interval [c - s/2, c - s/2 + s - 1]: [N, n] bool.
torch::Tensor inside(const torch::Tensor& centre, int64_t s, int64_t n) {
  auto idx = torch::arange(n, centre.options()).unsqueeze(0);
  if (s == 0) return torch::zeros({centre.size(0), n}, centre.options().dtype(torch::kBool));  // no cutout
  auto lo = (centre - s / 2).clamp(0, n - 1).unsqueeze(1), hi = (centre - s / 2 + s - 1).clamp(0, n - 1).unsqueeze(1);
  return (idx >= lo) & (idx <= hi);
}

}  // namespace

DiffAugmentDraws draw_diff_augment(const std::vector<rng::Key>& keys, int64_t h, int64_t w, const DiffAugmentOptions& o) {
  const int64_t rh = reach(h, o.translation), rw = reach(w, o.translation);
  const int64_t sh = reach(h, o.cutout), sw = reach(w, o.cutout);
  std::vector<float> b, s, c;
  std::vector<int64_t> th, tw, ch, cw;
  for (auto& k : keys) {
    rng::Stream st(k);
    b.push_back(static_cast<float>(st.uniform()));
    s.push_back(static_cast<float>(st.uniform()));
    c.push_back(static_cast<float>(st.uniform()));
    th.push_back(st.uniform_int(-rh, rh));
    tw.push_back(st.uniform_int(-rw, rw));
    ch.push_back(st.uniform_int(0, h - sh % 2));
    cw.push_back(st.uniform_int(0, w - sw % 2));
  }
  DiffAugmentDraws d;
  d.brightness = torch::tensor(b);
  d.saturation = torch::tensor(s);
  d.contrast = torch::tensor(c);
  d.shift_h = torch::tensor(th, torch::kInt64);
  d.shift_w = torch::tensor(tw, torch::kInt64);
  d.cutout_h = torch::tensor(ch, torch::kInt64);
  d.cutout_w = torch::tensor(cw, torch::kInt64);
  return d;
}

torch::Tensor diff_augment(const torch::Tensor& x_in, const DiffAugmentDraws& d, const DiffAugmentOptions& o) {
  require<DataError>(x_in.dim() == 4, "DiffAugment: expected images [N, C, H, W], got ", x_in.sizes());
  const int64_t N = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
  for (auto* t : {&d.brightness, &d.saturation, &d.contrast, &d.shift_h, &d.shift_w, &d.cutout_h, &d.cutout_w})
    require<DataError>(t->defined() && t->numel() == N, "DiffAugment: draws for ", t->numel(), " images, batch of ", N);
  auto per = [&](const torch::Tensor& v) { return v.to(x_in.device(), x_in.scalar_type()).view({N, 1, 1, 1}); };
  auto x = x_in;
  if (o.color) {
    x = x + (per(d.brightness) - 0.5);
    auto m = x.mean(1, true);
    x = (x - m) * (per(d.saturation) * 2) + m;
    m = x.mean({1, 2, 3}, true);
    x = (x - m) * (per(d.contrast) + 0.5) + m;
  }

  // Translation: pad one zero pixel on every side; out[i] = padded[clamp(i + shift + 1, 0, side + 1)],
  // the reference's indexing (content moves up/left by a positive shift; past the border: zero).
  auto dev = torch::TensorOptions().dtype(torch::kInt64).device(x.device());
  auto pad = torch::constant_pad_nd(x, {1, 1, 1, 1}, 0);
  auto rows = (torch::arange(H, dev).unsqueeze(0) + d.shift_h.to(x.device()).unsqueeze(1) + 1).clamp(0, H + 1);
  auto cols = (torch::arange(W, dev).unsqueeze(0) + d.shift_w.to(x.device()).unsqueeze(1) + 1).clamp(0, W + 1);
  x = pad.gather(2, rows.view({N, 1, H, 1}).expand({N, C, H, W + 2}));
  x = x.gather(3, cols.view({N, 1, 1, W}).expand({N, C, H, W}));

  const int64_t sh = reach(H, o.cutout), sw = reach(W, o.cutout);
  auto cut = inside(d.cutout_h.to(x.device()), sh, H).unsqueeze(2) & inside(d.cutout_w.to(x.device()), sw, W).unsqueeze(1);
  return x * (~cut).to(x.scalar_type()).unsqueeze(1);
}

}  // namespace mcm::models
