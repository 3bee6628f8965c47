#!/usr/bin/env python3
"""The diffusers side of bench/unet_step: the folder our side wrote (config.json and its random
weights: UNet3DConditionModel or UNetMotionModel), the same inputs and timing rule; writes its
eval-mode output for the agreement check and prints JSON (times, and peak memory on CUDA)."""
import argparse
import json
import os
import statistics
import time

import torch
from safetensors.torch import load_file, save_file
import diffusers


def main():
    ap = argparse.ArgumentParser()
    for k, d in (("weights", ""), ("inputs", ""), ("output", ""), ("device", "cpu"), ("dtype", "fp32")):
        ap.add_argument("--" + k, default=d)
    for k, d in (("reps", 10), ("threads", 2)):
        ap.add_argument("--" + k, type=int, default=d)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with open(os.path.join(a.weights, "config.json")) as f:
        cls = getattr(diffusers, json.load(f)["_class_name"])  # UNet3DConditionModel or UNetMotionModel
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    unet = cls.from_pretrained(a.weights, torch_dtype=dtype).to(a.device)
    inputs = load_file(a.inputs)
    x, t, ctx = (inputs[k].to(a.device) for k in ("x", "t", "ctx"))
    if cls is diffusers.UNetMotionModel:  # it takes the text per frame (AnimateDiffPipeline repeats it)
        ctx = ctx.repeat_interleave(x.shape[2], 0)
    unet.eval()
    with torch.no_grad():
        save_file({"out": unet(x, t, encoder_hidden_states=ctx).sample.float().cpu().contiguous()}, a.output)

    def sync():
        if a.device == "cuda":
            torch.cuda.synchronize()

    def time_it(backward):
        unet.train(backward)  # forward as a sampler (eval, no_grad); forward+backward in train mode
        if a.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
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
        peak = torch.cuda.max_memory_allocated() / 2**30 if a.device == "cuda" else 0.0
        return statistics.median(ms), peak

    fwd, fwd_peak = time_it(False)
    fb, fb_peak = time_it(True)
    print(json.dumps({"forward_ms": fwd, "forward_backward_ms": fb, "forward_peak_gib": fwd_peak,
                      "forward_backward_peak_gib": fb_peak,
                      "params": sum(p.numel() for p in unet.parameters()), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
