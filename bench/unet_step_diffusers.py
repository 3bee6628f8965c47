#!/usr/bin/env python3
"""The diffusers side of bench/unet_step: same configuration, inputs and timing rule; prints JSON."""
import argparse
import json
import os
import statistics
import time

import torch
from diffusers import UNet3DConditionModel

TINY = dict(
    down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
    block_out_channels=(64, 128, 128), layers_per_block=1, norm_num_groups=32,
    cross_attention_dim=128, attention_head_dim=32,
)


def main():
    ap = argparse.ArgumentParser()
    for k, d in (("size", "tiny"), ("unet", ""), ("device", "cpu"), ("dtype", "fp32")):
        ap.add_argument("--" + k, default=d)
    for k, d in (("frames", 8), ("res", 16), ("batch", 2), ("text-len", 77), ("reps", 10), ("threads", 2)):
        ap.add_argument("--" + k, type=int, default=d)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.unet:  # a diffusers unet/ folder: its config.json (the weights are not used)
        with open(os.path.join(a.unet, "config.json")) as f:
            unet = UNet3DConditionModel(**{k: v for k, v in json.load(f).items() if not k.startswith("_")})
    else:
        unet = UNet3DConditionModel(**(TINY if a.size == "tiny" else {}))  # defaults: ModelScopeT2V
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    unet.to(a.device, dtype)
    cfg = unet.config
    x = torch.randn(a.batch, cfg.in_channels, a.frames, a.res, a.res, device=a.device, dtype=dtype)
    t = torch.full((a.batch,), 500, device=a.device, dtype=torch.int64)
    ctx = torch.randn(a.batch, a.text_len, cfg.cross_attention_dim, device=a.device, dtype=dtype)

    def sync():
        if a.device == "cuda":
            torch.cuda.synchronize()

    def time_it(backward):
        unet.train(backward)  # forward as a sampler (eval, no_grad); forward+backward in train mode
        ms = []
        for r in range(a.reps + 2):
            unet.zero_grad(set_to_none=True)
            sync()
            t0 = time.perf_counter()
            if backward:
                unet(x, t, encoder_hidden_states=ctx).sample.float().square().mean().backward()
            else:
                with torch.no_grad():
                    unet(x, t, encoder_hidden_states=ctx)
            sync()
            if r >= 2:
                ms.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(ms)

    fwd = time_it(False)
    fb = time_it(True)
    print(json.dumps({"forward_ms": fwd, "forward_backward_ms": fb,
                      "params": sum(p.numel() for p in unet.parameters()), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
