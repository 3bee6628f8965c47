"""Golden data for tests/eval/test_frechet.cpp, written into the folder given as argv[1]:
- two sets of random features and their Fréchet distance as StyleGAN-V computes it (float64
  moments, population covariance, scipy.linalg.sqrtm of the covariance product);
- a small TorchScript module with StyleGAN-V's I3D signature forward(x, rescale, resize,
  return_features) on uint8 [B, 3, T, H, W], and its features of a fixed video batch, computed
  here in Python with the keyword arguments StyleGAN-V passes."""
import json
import os
import sys

import numpy as np
import scipy.linalg
import torch
from safetensors.torch import save_file

out = sys.argv[1]
g = torch.Generator().manual_seed(0)


def stylegan_v_fd(a, b):
    def stats(x):
        x = x.astype(np.float64)
        mu = x.sum(0) / len(x)
        cov = (x.T @ x) / len(x) - np.outer(mu, mu)
        return mu, cov
    mu1, c1 = stats(a)
    mu2, c2 = stats(b)
    s, _ = scipy.linalg.sqrtm(c1 @ c2, disp=False)
    return float(np.real(np.square(mu1 - mu2).sum() + np.trace(c1 + c2 - s * 2)))


cases = {}
tensors = {}
for name, (n1, n2, d, shift) in {"close": (300, 250, 8, 0.1), "far": (64, 80, 16, 2.0), "low_rank": (6, 9, 12, 0.5)}.items():
    a = torch.randn(n1, d, generator=g, dtype=torch.float64)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) * 0.5 + torch.eye(d, dtype=torch.float64)
    b = torch.randn(n2, d, generator=g, dtype=torch.float64) @ mix + shift
    tensors[f"{name}/a"], tensors[f"{name}/b"] = a, b
    cases[name] = stylegan_v_fd(a.numpy(), b.numpy())


class FakeI3d(torch.nn.Module):
    """StyleGAN-V's I3D signature; rescale maps 0..255 to [-1, 1], resize pools to 4 x 4 frames."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 16, 5)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False):
        assert x.dtype == torch.uint8
        y = x.float()
        if rescale:
            y = y / 255.0 * 2 - 1
        if resize:
            y = torch.nn.functional.adaptive_avg_pool3d(y, (1, 4, 4))
        f = self.proj(y.flatten(1))
        if return_features:
            return f
        return f.softmax(-1)


torch.manual_seed(1)
m = torch.jit.script(FakeI3d().eval())
m.save(os.path.join(out, "fake_i3d.pt"))
videos = torch.randint(0, 256, (3, 5, 12, 10, 3), generator=g, dtype=torch.uint8)  # [B, T, H, W, 3]
with torch.no_grad():
    feats = m(videos.permute(0, 4, 1, 2, 3).contiguous(), rescale=True, resize=True, return_features=True)
tensors["i3d/videos"], tensors["i3d/features"] = videos, feats
save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "golden.safetensors"))
with open(os.path.join(out, "cases.json"), "w") as f:
    json.dump(cases, f)
