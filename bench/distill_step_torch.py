"""MCM's distillation step as a skilled PyTorch user writes it, for bench/distill_step.sh: the
teacher `mcm teacher` wrote loaded by diffusers, the student its copy plus PEFT LoRA on MCM's
targets, the learned motion head and its EMA copy, the frame discriminator on the teacher backbone
(the heads, DiffAugment and feature extraction of tests/distill/make_cd_golden.py, the step our
C++ matches), mixed trajectories; generator step then discriminator step, each with its own AdamW,
the student's gradients clipped at 10. Same prep latents (in memory), batch, dtype and torch
threads as ours. On a GPU (--device cuda --precision bf16) both passes run under bf16 autocast with
fp32 weights and fused AdamW, and the JSON has the peak memory of torch's caching allocator.
Prints one JSON line."""
import argparse
import copy
import glob
import json
import os
import statistics
import sys
import time

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet3DConditionModel
from peft import LoraConfig, inject_adapter_in_model

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "distill"))
import make_cd_golden as G  # noqa: E402  (the reference step's modules, sized below)

ap = argparse.ArgumentParser()
ap.add_argument("--run", required=True, help="a run folder with teacher/unet, teacher/scheduler and prep/")
ap.add_argument("--batch", type=int, required=True)
ap.add_argument("--steps", type=int, default=10)
ap.add_argument("--warmup", type=int, default=2)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--lora_rank", type=int, default=16)
ap.add_argument("--lr", type=float, default=1e-4)
ap.add_argument("--disc_lr", type=float, default=1e-4)
ap.add_argument("--device", default="cpu")
ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16: autocast, fp32 weights")
args = ap.parse_args()
dev = torch.device(args.device)
cuda = dev.type == "cuda"
autocast = lambda: torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
torch.use_deterministic_algorithms(False)  # the golden module turns it on; a user would not
torch.set_num_threads(args.threads)
torch.manual_seed(0)


def load(kind):
    lat, txt = [], []
    for path in sorted(glob.glob(os.path.join(args.run, "prep", f"{kind}-*.h5"))):
        with h5py.File(path, "r") as f:
            lat.append(f["latents"][:].astype(np.float32))
            txt.append(f["text_emb"][:].astype(np.float32))
    return torch.from_numpy(np.concatenate(lat)), torch.from_numpy(np.concatenate(txt))


lat, txt = load("video")
img, img_txt = load("image")
lat, txt, img, img_txt = lat.to(dev), txt.to(dev), img.to(dev), img_txt.to(dev)
teacher = UNet3DConditionModel.from_pretrained(os.path.join(args.run, "teacher", "unet")).eval().requires_grad_(False).to(dev)
with open(os.path.join(args.run, "teacher", "scheduler", "scheduler_config.json")) as f:
    sc = json.load(f)
sched = DDPMScheduler(num_train_timesteps=1000, beta_start=sc["beta_start"], beta_end=sc["beta_end"],
                      beta_schedule=sc["beta_schedule"], rescale_betas_zero_snr=sc.get("rescale_betas_zero_snr", False),
                      prediction_type=sc["prediction_type"])
abar = sched.alphas_cumprod.float().to(dev)
x0_pred = sc["prediction_type"] == "sample"

# Size the reference modules to this teacher and data (tiny.toml's [distill] defaults).
G.C, G.T, G.H, G.W = lat.shape[1:]
G.D = txt.shape[2]
G.HIDDEN, G.GROUPS, G.CMAP, G.VIRTUAL_BATCH, G.K, G.DISC_T = 64, 32, 64, 8, 2, 0
B, K = args.batch, G.K

student = copy.deepcopy(teacher)
inject_adapter_in_model(LoraConfig(r=args.lora_rank, lora_alpha=args.lora_rank, target_modules=G.TARGETS,
                                   exclude_modules=r".*(^|\.)temp_convs(\.|$).*"), student)
student.requires_grad_(False)
lora = [p for n, p in student.named_parameters() if "lora_" in n]
for p in lora:
    p.requires_grad_(True)
student.train()
torch.set_default_device(dev)  # what the reference modules below create lands on the device
head = G.MotionHead()
head_target = copy.deepcopy(head).requires_grad_(False)
g = torch.Generator(device=dev).manual_seed(0)
chans = list(teacher.config.block_out_channels) + [teacher.config.block_out_channels[-1]]
disc = G.Disc(chans, g)
student_params = lora + list(head.parameters())
opt_s = torch.optim.AdamW(student_params, lr=args.lr, weight_decay=0.0, fused=cuda)
opt_d = torch.optim.AdamW(disc.parameters(), lr=args.disc_lr, weight_decay=0.0, fused=cuda)
uncond = torch.zeros(1, txt.shape[1], txt.shape[2])


def bc(v):
    return v.view(-1, 1, 1, 1, 1)


def x0_of(out, x, t):
    if x0_pred:
        return out
    a = bc(abar[t])
    return (x - (1 - a).sqrt() * out) / a.sqrt()


def eps_of(out, x, t):
    if not x0_pred:
        return out
    a = bc(abar[t])
    return (x - a.sqrt() * out) / (1 - a).sqrt().clamp_min(1e-12)


def f(x, t, c):
    st = 4.0 * t.float()
    return bc(0.25 / (st ** 2 + 0.25)) * x + bc(st / (st ** 2 + 0.25) ** 0.5) * x0_of(student(x, t, c).sample, x, t)


if cuda:
    torch.cuda.reset_peak_memory_stats(dev)
times = []
for step in range(args.warmup + args.steps):
    t0 = time.perf_counter()
    idx = torch.randint(0, lat.shape[0], (B,))
    x0, text = lat[idx].clone(), txt[idx]
    index = torch.randint(0, 50, (B,))
    w = 5 + 10 * torch.rand(B)
    noise = torch.randn_like(x0)
    mixed = torch.rand(B) < 0.5
    fwd = autocast()
    fwd.__enter__()
    if mixed.any():
        with torch.no_grad():
            rows = mixed.nonzero().flatten()
            z = torch.randn(len(rows), *x0.shape[1:])
            t_last = torch.full((len(rows),), 999)
            x0[rows] = x0_of(student(z, t_last, text[rows]).sample, z, t_last)
    t = (index + 1) * 20 - 1
    s = (t - 20).clamp(min=0)
    a_t = bc(abar[t])
    x_t = torch.where(bc(t == 999), noise, a_t.sqrt() * x0 + (1 - a_t).sqrt() * noise)
    pred = f(x_t, t, text)
    with torch.no_grad():
        oc, ou = teacher(x_t, t, text).sample, teacher(x_t, t, uncond.expand(B, -1, -1)).sample
        x0_g = x0_of(oc, x_t, t) + bc(w) * (x0_of(oc, x_t, t) - x0_of(ou, x_t, t))
        eps_g = eps_of(oc, x_t, t) + bc(w) * (eps_of(oc, x_t, t) - eps_of(ou, x_t, t))
        a_s = bc(abar[s])
        x_s = a_s.sqrt() * x0_g + (1 - a_s).sqrt() * eps_g
        target = torch.where(bc(s == 0), x_s, f(x_s, s, text))
        mt = head_target(target)
    l_cd = (torch.sqrt((head(pred) - mt) ** 2 + 1e-6) - 1e-3).mean()
    ctx = text.repeat_interleave(K, 0)
    augs = {k: G.draw_aug(B * K, g) for k in ("g", "df", "dr")}
    disc.requires_grad_(False)
    feats = G.teacher_features(teacher, G.augment(G.pick(pred, torch.randint(0, G.T, (B, K))), augs["g"]), ctx)
    loss_g = -disc(feats, ctx.mean(1)).mean()
    fwd.__exit__(None, None, None)
    (l_cd + loss_g).backward()
    torch.nn.utils.clip_grad_norm_(student_params, 10.0)
    opt_s.step()
    opt_s.zero_grad(set_to_none=False)
    disc.requires_grad_(True)
    ii = torch.randint(0, img.shape[0], (B * K,))
    real, real_text = img[ii], img_txt[ii]
    fwd = autocast()
    fwd.__enter__()
    with torch.no_grad():
        f_fake = G.teacher_features(teacher, G.augment(G.pick(pred.detach(), torch.randint(0, G.T, (B, K))), augs["df"]), ctx)
        f_real = G.teacher_features(teacher, G.augment(real, augs["dr"]), real_text)
    hinge = F.relu(1 - disc(f_real, real_text.mean(1))).mean() + F.relu(1 + disc(f_fake, ctx.mean(1))).mean()
    a = torch.rand(B * K).view(-1, 1, 1)
    mix = [(a * r + (1 - a) * q).requires_grad_(True) for r, q in zip(f_real, f_fake)]
    grads = torch.autograd.grad(disc(mix, ctx.mean(1)).sum(), mix, create_graph=True)
    gp = ((torch.sqrt(sum(x.float().pow(2).flatten(1).sum(1) for x in grads)) - 1) ** 2).mean()
    fwd.__exit__(None, None, None)
    (hinge + 1e-5 * gp).backward()
    opt_d.step()
    opt_d.zero_grad(set_to_none=False)
    with torch.no_grad():
        for pt, po in zip(head_target.parameters(), head.parameters()):
            pt.mul_(0.95).add_(po, alpha=0.05)
    (l_cd + hinge).item()  # the step is done when its losses are known (ours logs them every step)
    if step >= args.warmup:
        times.append(time.perf_counter() - t0)
res = {"median_s": statistics.median(times), "steps": len(times), "batch": B, "threads": args.threads,
       "lora_params": sum(p.numel() for p in lora), "disc_params": sum(p.numel() for p in disc.parameters()),
       "device": args.device, "precision": args.precision}
if cuda:
    res["allocated_peak_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    res["reserved_peak_gib"] = torch.cuda.max_memory_reserved(dev) / 2**30
print(json.dumps(res))
