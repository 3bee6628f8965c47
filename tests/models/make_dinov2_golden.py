#!/usr/bin/env python3
"""A tiny random transformers Dinov2Model and its features, for our C++ DINOv2 to match.

Usage: make_dinov2_golden.py OUT_DIR

Writes OUT_DIR/dinov2/ (Dinov2Model.save_pretrained: config.json, model.safetensors; every weight
perturbed so no parameter keeps its initial value, layer scales included) and OUT_DIR/cases.safetensors:
per case c ("square": the position table's own 2x2 grid; "wide": a 3x4 grid, so the position
embeddings are interpolated bicubically), "c/pixels" [2, 3, H, W], "c/feat<l>" the final LayerNorm
of layer l's output for every layer (hidden_states[l + 1], CLS first), "c/last" last_hidden_state,
and "c/grad" d(sum over l of feat<l> * r<l>) / d(pixels) with "c/r<l>" fixed random weights.
"""
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import Dinov2Config, Dinov2Model

torch.set_num_threads(1)


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=None, mlp_ratio=4,
                       image_size=28, patch_size=14, layerscale_value=0.5, attn_implementation="eager")
    model = Dinov2Model(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    model.save_pretrained(os.path.join(out, "dinov2"), safe_serialization=True)
    tensors = {}
    for case, (h, w) in {"square": (28, 28), "wide": (42, 56)}.items():
        pixels = torch.randn(2, 3, h, w, generator=g).requires_grad_(True)
        res = model(pixel_values=pixels, output_hidden_states=True)
        total = 0
        for layer in range(cfg.num_hidden_layers):
            feat = model.layernorm(res.hidden_states[layer + 1])
            r = torch.randn(feat.shape, generator=g)
            total = total + (feat * r).sum()
            tensors[f"{case}/feat{layer}"] = feat.detach()
            tensors[f"{case}/r{layer}"] = r
        (grad,) = torch.autograd.grad(total, pixels)
        tensors[f"{case}/pixels"] = pixels.detach()
        tensors[f"{case}/last"] = res.last_hidden_state.detach()
        tensors[f"{case}/grad"] = grad
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "cases.safetensors"))


if __name__ == "__main__":
    main()
