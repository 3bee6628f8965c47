#!/usr/bin/env python3
"""PyTorch side of the whole-prep rows of bench/prep_throughput: what `mcm prep` does, written
the usual Python way. For each clip of a WebDataset shard: PyAV seek + decode of its window
(pyav_loader.decode_window: centre crop, bicubic resize to RGB), pixels to [-1, 1]; every
--batch-clips clips, diffusers' AutoencoderKL.encode (latent_dist.mean x scaling_factor) in
chunks of --encode-batch frames and transformers' CLIPTextModel on the captions (padded to 77),
results kept as float16 like prep stores them. Models load before the clock starts.

The windows are the ones `mcm prep` chose (read from its HDF5 output, --windows-h5), so both
sides decode the same frames; without it, seeded random starts.

Usage: prep_torch_loader.py --tar T --models DIR --size 64 --out OUT.json
       [--windows-h5 H5] [--threads 2] [--device cpu|cuda] [--dtype fp32|bf16|fp16]
"""
import argparse
import io
import json
import os
import random
import sys
import tarfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pyav_loader import decode_window  # noqa: E402


def samples(path):
    """(key, mp4 bytes, caption) in shard order."""
    groups, order = {}, []
    with tarfile.open(path) as tar:
        for m in tar:
            if not m.isfile():
                continue
            key, ext = m.name.rsplit(".", 1)
            if key not in groups:
                groups[key] = {}
                order.append(key)
            groups[key][ext] = tar.extractfile(m).read()
    return [(k, groups[k]["mp4"], json.loads(groups[k]["json"])["caption"]) for k in order if "mp4" in groups[k]]


def windows_from_h5(path):
    import h5py
    with h5py.File(path, "r") as f:
        keys = [k.decode() if isinstance(k, bytes) else str(k) for k in f["key"][:]]
        return dict(zip(keys, (int(r[0]) for r in f["frame_indices"][:])))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tar", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--batch-clips", type=int, default=8)
    ap.add_argument("--encode-batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--windows-h5", default="")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTokenizer
    import av
    import transformers

    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(a.threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[a.dtype]
    dev = torch.device(a.device)
    vae = AutoencoderKL.from_pretrained(os.path.join(a.models, "vae"), torch_dtype=dtype).to(dev).eval()
    text = CLIPTextModel.from_pretrained(os.path.join(a.models, "text_encoder"), torch_dtype=dtype).to(dev).eval()
    tok = CLIPTokenizer.from_pretrained(os.path.join(a.models, "tokenizer"))
    items = samples(a.tar)
    span = (a.frames - 1) * a.stride + 1
    if a.windows_h5:
        starts = windows_from_h5(a.windows_h5)
    else:
        rng = random.Random(a.seed)
        starts = {}
        for key, mp4, _ in items:
            with av.open(io.BytesIO(mp4)) as c:
                n = c.streams.video[0].frames
            starts[key] = rng.randrange(0, n - a.frames * a.stride + 1)
    items = [it for it in items if it[0] in starts]

    decode_s = encode_s = 0.0
    out = []

    def flush(batch):
        nonlocal encode_s
        t = time.perf_counter()
        x = torch.cat([b[0] for b in batch]).to(dev, dtype)
        lat = [vae.encode(x[i:i + a.encode_batch]).latent_dist.mean * vae.config.scaling_factor
               for i in range(0, x.shape[0], a.encode_batch)]
        ids = tok([b[1] for b in batch], padding="max_length", max_length=77, truncation=True,
                  return_tensors="pt").input_ids.to(dev)
        emb = text(ids).last_hidden_state
        out.append((torch.cat(lat).to("cpu", torch.float16), emb.to("cpu", torch.float16)))
        encode_s += time.perf_counter() - t

    t0 = time.perf_counter()
    with torch.inference_mode():
        batch = []
        for key, mp4, caption in items:
            t = time.perf_counter()
            rgb, idx, _ = decode_window(io.BytesIO(mp4), starts[key], a.frames, a.stride, a.size)
            assert idx[-1] - idx[0] + 1 == span
            batch.append((torch.from_numpy(rgb).permute(0, 3, 1, 2).float().div(127.5).sub(1.0), caption))
            decode_s += time.perf_counter() - t
            if len(batch) == a.batch_clips:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
        if dev.type == "cuda":
            torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    json.dump({"clips": len(items), "seconds": secs, "clips_per_s": len(items) / secs, "decode_seconds": decode_s,
               "encode_seconds": encode_s, "device": a.device, "dtype": a.dtype, "threads": a.threads,
               "torch": torch.__version__}, open(a.out, "w"))


if __name__ == "__main__":
    main()
