#!/usr/bin/env python3
"""One MCM consistency-distillation step in PyTorch, written from ../shared/MCM.md with diffusers'
UNet3DConditionModel (teacher and student) and PEFT (the student's LoRA), for our C++ step to match.

Usage: make_cd_golden.py OUT_DIR

Every random draw (grid index i, guidance w, noise eps, the mixed-trajectory choice and its noise
z) is made here and written out, so the C++ side runs the same step on the same numbers. Writes:
  OUT_DIR/teacher/                 diffusers folder of a tiny random UNet3DConditionModel (perturbed)
  OUT_DIR/cases.json               {case: {"prediction", "zero_snr", "motion", "freq_band", "loss", "loss_f64"}}
  OUT_DIR/<case>.safetensors       (and <case>_f64.safetensors: the same step in float64) inputs: latents, text, uncond, index, w, noise, mixed, mixed_noise;
                                   the student's adapters "lora/unet.<module>.lora_{A,B}.weight" (PEFT
                                   names without the adapter name, r = alpha so no scale is folded);
                                   the motion head "head/<name>" and its EMA copy "head_target/<name>";
                                   outputs: "pred", "target" and the gradients "grad/<module>.lora_{A,B}.weight",
                                   "grad_head/<name>"
"""
import copy
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet3DConditionModel
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
from safetensors.torch import save_file

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

UNET = dict(sample_size=8, in_channels=4, out_channels=4,
            down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
            block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8, cross_attention_dim=16, attention_head_dim=8)
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2",
           "conv_shortcut", "time_emb_proj", "downsamplers.0.conv", "upsamplers.0.conv"]
RANK = 4
B, C, T, H, W, L, D = 3, 4, 4, 8, 8, 5, 16
SOLVER_STEPS, SCALING, HUBER_C = 50, 4.0, 0.001
HIDDEN, GROUPS = 16, 8


class MotionHead(nn.Module):
    """MCM.md: per frame, x + conv2(silu(norm(conv1(silu(x))))), 1x1 convs C -> hidden -> C."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(C, HIDDEN, 1)
        self.norm = nn.GroupNorm(GROUPS, HIDDEN, eps=1e-5)
        self.conv2 = nn.Conv2d(HIDDEN, C, 1)

    def forward(self, x):
        b, c, t, h, w = x.shape
        f = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        r = self.conv2(F.silu(self.norm(self.conv1(F.silu(f)))))
        return x + r.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)


def butterworth(shape, cutoff=0.25, order=4, high=False):
    t, h, w = shape
    grid = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) * 2 / n - 1 for n in (t, h, w)], indexing="ij")
    d2 = sum(g * g for g in grid)
    low = 1 / (1 + (d2 / cutoff ** 2) ** order)
    return (1 - low if high else low).float()


def motion(kind, x, head, band):
    if kind == "raw":
        return x
    if kind == "diff":
        return x[:, :, 1:] - x[:, :, :-1]
    if kind == "freq":
        dims = (-3, -2, -1)
        f = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=dims), dim=dims)
        f = f * butterworth(x.shape[-3:], high=band == "high")
        return torch.fft.ifftn(torch.fft.ifftshift(f, dim=dims), dim=dims).real
    return head(x)


def bcast(v):
    return v.view(-1, 1, 1, 1, 1)


def run_case(name, prediction, zero_snr, kind, band, mixed, teacher, out, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          rescale_betas_zero_snr=zero_snr, prediction_type=prediction)
    abar = sched.alphas_cumprod.float()
    x0_real = torch.randn(B, C, T, H, W, generator=g)
    text = torch.randn(B, L, D, generator=g)
    uncond = torch.randn(1, L, D, generator=g)
    index = torch.tensor([SOLVER_STEPS - 1, 0, int(torch.randint(1, SOLVER_STEPS - 1, (1,), generator=g))])
    w = 5 + 10 * torch.rand(B, generator=g)
    noise = torch.randn(B, C, T, H, W, generator=g)
    mixed_t = torch.tensor(mixed, dtype=torch.bool)
    mixed_noise = torch.randn(B, C, T, H, W, generator=g)

    student = copy.deepcopy(teacher)
    exclude = r".*(^|\.)temp_convs(\.|$).*"
    inject_adapter_in_model(LoraConfig(r=RANK, lora_alpha=RANK, target_modules=TARGETS, exclude_modules=exclude), student)
    student.requires_grad_(False)
    with torch.no_grad():
        for n, p in student.named_parameters():
            if "lora_" in n:
                p.normal_(0, 0.05, generator=g)
                p.requires_grad_(True)
    head = MotionHead()
    with torch.no_grad():
        for _, p in head.named_parameters():
            p.normal_(0, 0.1, generator=g)  # a trained head: conv2 is no longer zero
    head_target = copy.deepcopy(head)
    with torch.no_grad():
        for _, p in head_target.named_parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    head_target.requires_grad_(False)
    # float64: the same draws and weights (made in float32 above), every model and input widened;
    # the schedule's tables and the boundary scalings stay float32 values, as in the float32 step.
    teacher = copy.deepcopy(teacher).to(dtype)
    student.to(dtype)
    head.to(dtype)
    head_target.to(dtype)
    x0_real, text, uncond, w, noise, mixed_noise = (v.to(dtype) for v in (x0_real, text, uncond, w, noise, mixed_noise))

    def x0_of(out_, x, t):
        a = bcast(abar[t])
        if prediction == "epsilon":
            return (x - (1 - a).sqrt() * out_) / a.sqrt()
        return out_

    def eps_of(out_, x, t):
        a = bcast(abar[t])
        if prediction == "epsilon":
            return out_
        return (x - a.sqrt() * out_) / (1 - a).sqrt()

    def f(unet, x, t, c):
        st = SCALING * t.float()
        c_skip = 0.25 / (st ** 2 + 0.25)
        c_out = st / (st ** 2 + 0.25) ** 0.5
        return bcast(c_skip) * x + bcast(c_out) * x0_of(unet(x, t, c).sample, x, t)

    x0 = x0_real.clone()
    if mixed_t.any():
        with torch.no_grad():
            rows = mixed_t.nonzero().flatten()
            z = mixed_noise[rows]
            t_last = torch.full((len(rows),), 999)
            x0[rows] = x0_of(student(z, t_last, text[rows]).sample, z, t_last)
    k = 1000 // SOLVER_STEPS
    t = (index + 1) * k - 1
    s = (t - k).clamp(min=0)
    a_t = bcast(abar[t])
    x_t = a_t.sqrt() * x0 + (1 - a_t).sqrt() * noise
    x_t = torch.where(bcast(t == 999), noise, x_t)
    pred = f(student, x_t, t, text)
    with torch.no_grad():
        oc = teacher(x_t, t, text).sample
        ou = teacher(x_t, t, uncond.expand(B, L, D)).sample
        x0_g = x0_of(oc, x_t, t) + bcast(w) * (x0_of(oc, x_t, t) - x0_of(ou, x_t, t))
        eps_g = eps_of(oc, x_t, t) + bcast(w) * (eps_of(oc, x_t, t) - eps_of(ou, x_t, t))
        a_s = bcast(abar[s])
        x_s = a_s.sqrt() * x0_g + (1 - a_s).sqrt() * eps_g
        target = f(student, x_s, s, text)
        mt = motion(kind, target, head_target, band)
    mp = motion(kind, pred, head, band)
    loss = (torch.sqrt((mp.float() - mt.float()) ** 2 + HUBER_C ** 2) - HUBER_C).mean()
    loss.backward()

    tensors = {"latents": x0_real, "text": text, "uncond": uncond, "index": index, "w": w, "noise": noise,
               "mixed": mixed_t.to(torch.uint8), "mixed_noise": mixed_noise, "pred": pred.detach(), "target": target}
    for n, v in get_peft_model_state_dict(student).items():
        tensors["lora/unet." + n] = v
    for n, p in student.named_parameters():
        if "lora_" in n:
            assert p.grad is not None, n
            tensors["grad/" + n.replace(".default", "")] = p.grad
    for n, p in head.named_parameters():
        tensors["head/" + n] = p.detach()
        if kind == "learn":
            tensors["grad_head/" + n] = p.grad
    for n, p in head_target.named_parameters():
        tensors["head_target/" + n] = p.detach()
    suffix = "_f64" if dtype == torch.float64 else ""
    save_file({k_: v.contiguous() for k_, v in tensors.items()}, os.path.join(out, name + suffix + ".safetensors"))
    return loss.item()


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    teacher = UNet3DConditionModel(**UNET)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in sorted(teacher.named_parameters()):
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    teacher.eval().requires_grad_(False)
    teacher.save_pretrained(os.path.join(out, "teacher"))
    cases = {}
    seed = 10
    for kind, band in [("raw", "low"), ("diff", "low"), ("freq", "low"), ("freq", "high"), ("learn", "low")]:
        for mixed in ([False, False, False], [True, False, True]):
            name = f"eps_{kind}{'_' + band if kind == 'freq' else ''}_{'mixed' if any(mixed) else 'real'}"
            cases[name] = ("epsilon", False, kind, band, mixed, seed)
            seed += 1
    cases["x0_zsnr_learn_mixed"] = ("sample", True, "learn", "low", [True, False, True], seed)
    for name, (prediction, zero_snr, kind, band, mixed, seed) in cases.items():
        cases[name] = {"prediction": prediction, "zero_snr": zero_snr, "motion": kind, "freq_band": band}
        for dtype, key in ((torch.float32, "loss"), (torch.float64, "loss_f64")):
            cases[name][key] = run_case(name, prediction, zero_snr, kind, band, mixed, teacher, out, seed, dtype)
    with open(os.path.join(out, "cases.json"), "w") as fh:
        json.dump(cases, fh, indent=1)


if __name__ == "__main__":
    main()
