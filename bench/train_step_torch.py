"""The teacher's training step as a skilled PyTorch user writes it, for bench/train_step.sh:
diffusers' UNet3DConditionModel built from the config.json that `mcm teacher` wrote, the same
prep latents and text embeddings held in memory, the same batch, loss (epsilon MSE at uniform
timesteps), gradient clipping, AdamW and torch thread count. On a GPU (--device cuda) the step runs
under bf16 autocast with fp32 master weights and fused AdamW, as a skilled user writes it, and
the JSON has the peak memory of torch's caching allocator. Prints one JSON line."""
import argparse
import glob
import json
import statistics
import time

import h5py
import numpy as np
import torch
from diffusers import DDPMScheduler, UNet3DConditionModel

ap = argparse.ArgumentParser()
ap.add_argument("--unet", required=True, help="a diffusers unet/ folder (config.json is used, weights are not)")
ap.add_argument("--prep", required=True, help="folder of prep/video-*.h5 shards")
ap.add_argument("--batch", type=int, required=True)
ap.add_argument("--steps", type=int, default=12)
ap.add_argument("--warmup", type=int, default=2)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--device", default="cpu")
ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16: autocast, fp32 weights")
args = ap.parse_args()
dev = torch.device(args.device)
cuda = dev.type == "cuda"
torch.set_num_threads(args.threads)
torch.manual_seed(0)

with open(f"{args.unet}/config.json") as f:
    cfg = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
unet = UNet3DConditionModel(**cfg).train().to(dev)
opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0, fused=cuda)
sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)

lat, txt = [], []
for path in sorted(glob.glob(f"{args.prep}/video-*.h5")):
    with h5py.File(path, "r") as f:
        lat.append(f["latents"][:].astype(np.float32))
        txt.append(f["text_emb"][:].astype(np.float32))
lat, txt = torch.from_numpy(np.concatenate(lat)).to(dev), torch.from_numpy(np.concatenate(txt)).to(dev)
sched.alphas_cumprod = sched.alphas_cumprod.to(dev)
if cuda:
    torch.cuda.reset_peak_memory_stats(dev)

times = []
for step in range(args.warmup + args.steps):
    t0 = time.perf_counter()
    idx = torch.randint(0, lat.shape[0], (args.batch,), device=dev)
    x0, c = lat[idx], txt[idx]
    noise = torch.randn_like(x0)
    t = torch.randint(0, 1000, (args.batch,), device=dev)
    xt = sched.add_noise(x0, noise, t)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
        out = unet(xt, t, c).sample
    loss = torch.nn.functional.mse_loss(out.float(), noise)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=False)
    loss.item()  # the step is done when its loss is known (ours logs it every step too)
    if step >= args.warmup:
        times.append(time.perf_counter() - t0)
res = {"median_s": statistics.median(times), "steps": len(times), "batch": args.batch, "threads": args.threads,
       "params": sum(p.numel() for p in unet.parameters()), "device": args.device, "precision": args.precision}
if cuda:
    res["allocated_peak_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    res["reserved_peak_gib"] = torch.cuda.max_memory_reserved(dev) / 2**30
if args.device != "cpu" or args.precision != "fp32":
    # Model FLOPs of one step (forward + backward), counted once by PyTorch's own counter.
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            out = unet(xt, t, c).sample
        torch.nn.functional.mse_loss(out.float(), noise).backward()
    opt.zero_grad(set_to_none=False)
    res["step_flops"] = fc.get_total_flops()
print(json.dumps(res))
