#!/usr/bin/env python3
"""The PyTorch side of bench/eval_throughput: the same detector network and weights in Python, the
same teacher in diffusers' UNet3DConditionModel with diffusers' DDIMScheduler; prints JSON."""
import argparse
import json
import os
import statistics
import time

import torch
from torch import nn
from safetensors.torch import load_file
import diffusers
from diffusers import DDIMScheduler, UNet3DConditionModel


class SynthNet(nn.Module):
    """eval/synth_detector.cpp's network: three strided 3-D convolutions, a global mean, four heads."""

    def __init__(self, w=16):
        super().__init__()
        self.c1 = nn.Conv3d(3, w, 3, stride=(1, 2, 2), padding=1)
        self.c2 = nn.Conv3d(w, 2 * w, 3, stride=2, padding=1)
        self.c3 = nn.Conv3d(2 * w, 4 * w, 3, stride=2, padding=1)
        self.shape, self.colour = nn.Linear(4 * w, 4), nn.Linear(4 * w, 6)
        self.direction, self.speed = nn.Linear(4 * w, 4), nn.Linear(4 * w, 2)

    def forward(self, videos):  # uint8 [B, T, H, W, 3] -> the 16 class probabilities
        x = videos.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
        h = torch.relu(self.c3(torch.relu(self.c2(torch.relu(self.c1(x))))))
        f = h.mean(dim=(2, 3, 4))
        return torch.cat([torch.softmax(m(f), 1) for m in (self.shape, self.colour, self.direction, self.speed)], 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--device", default="cpu")
    for k, d in (("threads", 2), ("clips", 256), ("batch", 16), ("sample-clips", 16), ("sample-batch", 8), ("steps", 4),
                 ("text-len", 16)):
        ap.add_argument("--" + k, type=int, default=d)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)

    net = SynthNet()
    net.load_state_dict(load_file(os.path.join(a.run, "eval", "detector.safetensors")))
    net.to(dev).eval()
    torch.manual_seed(0)
    clips = torch.randint(0, 256, (a.clips, 8, 16, 16, 3), dtype=torch.uint8)

    def features():
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            for b in range(0, a.clips, a.batch):
                net(clips[b:b + a.batch].to(dev))
        sync()
        return a.clips / (time.perf_counter() - t0)

    unet = UNet3DConditionModel.from_pretrained(os.path.join(a.run, "teacher", "unet")).to(dev).eval()
    sched = DDIMScheduler.from_pretrained(os.path.join(a.run, "teacher", "scheduler"))
    c = unet.config
    x0 = torch.randn(a.sample_batch, c.in_channels, 8, 8, 8, device=dev)
    cond = torch.randn(a.sample_batch, a.text_len, c.cross_attention_dim, device=dev)
    uncond = torch.randn(1, a.text_len, c.cross_attention_dim, device=dev)
    ctx = torch.cat([cond, uncond.expand(a.sample_batch, -1, -1)])

    def sampler():
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            for _ in range(0, a.sample_clips, a.sample_batch):
                sched.set_timesteps(a.steps)
                x = x0
                for t in sched.timesteps:
                    out = unet(torch.cat([x, x]), t, encoder_hidden_states=ctx).sample
                    co, un = out.chunk(2)
                    x = sched.step(un + 5.0 * (co - un), t, x).prev_sample
        sync()
        return a.sample_clips / (time.perf_counter() - t0)

    features(), sampler()  # warm-up
    print(json.dumps({"features_clips_per_s": features(), "sampler_clips_per_s": sampler(), "torch": torch.__version__,
                      "diffusers": diffusers.__version__}))


if __name__ == "__main__":
    main()
