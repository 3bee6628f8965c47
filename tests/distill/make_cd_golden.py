#!/usr/bin/env python3
"""One complete MCM training step in PyTorch, written from ../shared/MCM.md with diffusers'
UNet3DConditionModel (teacher and student) and PEFT (the student's LoRA), for our C++ step to match:
the consistency loss on a motion representation, the generator's hinge loss through the frame
discriminator and the discriminator's hinge loss and gradient penalty, on either backbone: the
teacher's (the frozen teacher's encoder features of latent frames) or DINOv2 (transformers'
Dinov2Model, tiny and random, on frames decoded by a fixed linear decoder, with DiffAugment's
colour ops, resized and ImageNet-normalised).

Usage: make_cd_golden.py OUT_DIR

Every random draw (grid index i, guidance w, noise eps, the mixed-trajectory choice and its noise
z) is made here and written out, so the C++ side runs the same step on the same numbers. Writes:
  OUT_DIR/teacher/                 diffusers folder of a tiny random UNet3DConditionModel (perturbed)
  OUT_DIR/dinov2/                  transformers folder of a tiny random Dinov2Model (perturbed)
  OUT_DIR/cases.json               {case: {"prediction", "zero_snr", "motion", "freq_band", "loss", "loss_f64"}}
  OUT_DIR/<case>.safetensors       (and <case>_f64.safetensors: the same step in float64) inputs: latents, text, uncond, index, w, noise, mixed, mixed_noise;
                                   the student's adapters "lora/unet.<module>.lora_{A,B}.weight" (PEFT
                                   names without the adapter name, r = alpha so no scale is folded);
                                   the motion head "head/<name>" and its EMA copy "head_target/<name>";
                                   outputs: "pred", "target" and the gradients "grad/<module>.lora_{A,B}.weight",
                                   "grad_head/<name>";
                                   the discriminator: heads "disc/<name>" (spectral-norm u, v included),
                                   draws "adv/{g,d,real}_frames", "adv/{g,d_fake,d_real}_aug/<field>",
                                   "adv/gp_alpha", real frames "adv/real" [B*k, C, H, W] and their text
                                   "adv/real_text" (images; clip frames of the latents when absent),
                                   its gradients "grad_disc/<name>"; cases.json adds "loss_g", "loss_d",
                                   "gp" (and _f64), "disc_weight", "gp_weight", "backbone"; for DINOv2
                                   "adv/decode" [3, C]: pixels = (decode . latents) upsampled x2 (nearest).
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
from transformers import Dinov2Config, Dinov2Model

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
K, CMAP, VIRTUAL_BATCH, DISC_T = 2, 8, 4, 0   # frames per clip, projection width, local BN group, backbone timestep
DISC_WEIGHT, GP_WEIGHT = 0.5, 0.1             # large enough that both terms show in the gradients
TRANSLATION, CUTOUT = 0.125, 0.2
DINO_SIZE = 28                                # decoded 16x16 frames are resized to this (2 x 2 patches of 14)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class SpectralConv1d(nn.Module):
    """Conv1d with weight_orig / (u . W v), u and v stored (MCM.md: spectral-norm convs)."""

    def __init__(self, cin, cout, k, g):
        super().__init__()
        self.k = k
        self.weight_orig = nn.Parameter(torch.randn(cout, cin, k, generator=g) * (cin * k) ** -0.5)
        self.bias = nn.Parameter(torch.randn(cout, generator=g) * 0.1)
        self.register_buffer("weight_u", F.normalize(torch.randn(cout, generator=g), dim=0))
        self.register_buffer("weight_v", F.normalize(torch.randn(cin * k, generator=g), dim=0))

    def forward(self, x):
        w = self.weight_orig.reshape(self.weight_orig.shape[0], -1)
        sigma = torch.dot(self.weight_u, torch.mv(w, self.weight_v))
        p = self.k // 2
        if p:
            x = F.pad(x, (p, p), mode="circular")
        return F.conv1d(x, self.weight_orig / sigma, self.bias)


class BatchNormLocal(nn.Module):
    """Frames in ceil(N / VIRTUAL_BATCH) consecutive groups, each normalised over (frames, tokens)."""

    def __init__(self, c, g):
        super().__init__()
        self.weight = nn.Parameter(1 + 0.1 * torch.randn(c, generator=g))
        self.bias = nn.Parameter(0.1 * torch.randn(c, generator=g))

    def forward(self, x):
        n = x.shape[0]
        groups = -(-n // VIRTUAL_BATCH)
        y = x.view(groups, -1, x.shape[1], x.shape[2])
        mean = y.mean(dim=(1, 3), keepdim=True)
        var = y.var(dim=(1, 3), keepdim=True, unbiased=False)
        y = ((y - mean) / torch.sqrt(var + 1e-5)).view(x.shape)
        return y * self.weight[None, :, None] + self.bias[None, :, None]


class DiscHead(nn.Module):
    """MCM.md: SN conv k1 + local BN + LeakyReLU(0.2); residual SN conv k9 circular block; SN conv to
    CMAP; logit per token = <feature, Linear(text)> / sqrt(CMAP)."""

    def __init__(self, c, g):
        super().__init__()
        self.conv0, self.bn0 = SpectralConv1d(c, c, 1, g), BatchNormLocal(c, g)
        self.conv1, self.bn1 = SpectralConv1d(c, c, 9, g), BatchNormLocal(c, g)
        self.cls = SpectralConv1d(c, CMAP, 1, g)
        self.cmapper = nn.Linear(D, CMAP)
        with torch.no_grad():
            self.cmapper.weight.copy_(torch.randn(CMAP, D, generator=g) * D ** -0.5)
            self.cmapper.bias.copy_(torch.randn(CMAP, generator=g) * 0.1)

    def forward(self, x, c):
        h = F.leaky_relu(self.bn0(self.conv0(x)), 0.2)
        h = (h + F.leaky_relu(self.bn1(self.conv1(h)), 0.2)) / 2 ** 0.5
        return (self.cls(h) * self.cmapper(c).unsqueeze(-1)).sum(1) / CMAP ** 0.5


class Disc(nn.Module):
    def __init__(self, channels, g):
        super().__init__()
        self.heads = nn.ModuleList([DiscHead(c, g) for c in channels])

    def forward(self, feats, c):
        return torch.cat([h(f, c) for h, f in zip(self.heads, feats)], dim=1)


def teacher_features(teacher, frames, ctx):
    """The frozen teacher's encoder features of latent frames run as one-frame videos at DISC_T:
    every down block's last layer output (before its downsampler), then the mid block's output."""
    feats = []
    hooks = [b.register_forward_hook(lambda m, i, o: feats.append(o[1][-2] if len(o[1]) > 1 and
                                                                 m.downsamplers is not None else o[1][-1]))
             for b in teacher.down_blocks]
    hooks.append(teacher.mid_block.register_forward_hook(lambda m, i, o: feats.append(o)))
    t = torch.full((frames.shape[0],), DISC_T)
    teacher(frames.unsqueeze(2), t, ctx)
    for h in hooks:
        h.remove()
    return [f.flatten(2) for f in feats]


def dino_features(dino, decode, frames, aug):
    """Frames decoded (fixed linear map, nearest x2), augmented with colour, resized bilinearly to
    DINO_SIZE, ImageNet-normalised; DINOv2's layers 0..3 (of 4), final LayerNorm, CLS dropped."""
    px = torch.einsum("oc,nchw->nohw", decode, frames).repeat_interleave(2, 2).repeat_interleave(2, 3)
    px = augment(px, aug, color=True)
    px = F.interpolate(px, size=(DINO_SIZE, DINO_SIZE), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, dtype=px.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=px.dtype).view(1, 3, 1, 1)
    res = dino(pixel_values=((px + 1) / 2 - mean) / std, output_hidden_states=True)
    return [dino.layernorm(res.hidden_states[layer + 1])[:, 1:].transpose(1, 2) for layer in range(4)]


def augment(x, d, color=False):
    """DiffAugment with explicit draws: colour (pixels only), translation (1/8), cutout (0.2)."""
    n, c, h, w = x.shape
    if color:
        per = lambda v: v.to(x.dtype).view(n, 1, 1, 1)
        x = x + (per(d["brightness"]) - 0.5)
        m = x.mean(dim=1, keepdim=True)
        x = (x - m) * (per(d["saturation"]) * 2) + m
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - m) * (per(d["contrast"]) + 0.5) + m
    pad = F.pad(x, (1, 1, 1, 1))
    rows = (torch.arange(h)[None] + d["shift_h"][:, None] + 1).clamp(0, h + 1)
    cols = (torch.arange(w)[None] + d["shift_w"][:, None] + 1).clamp(0, w + 1)
    y = pad.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w + 2))
    y = y.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))
    sh, sw = int(h * CUTOUT + 0.5), int(w * CUTOUT + 0.5)

    def inside(centre, s, m):
        lo = (centre - s // 2).clamp(0, m - 1)[:, None]
        hi = (centre - s // 2 + s - 1).clamp(0, m - 1)[:, None]
        idx = torch.arange(m)[None]
        return (idx >= lo) & (idx <= hi)

    cut = inside(d["cutout_h"], sh, h)[:, :, None] & inside(d["cutout_w"], sw, w)[:, None, :]
    return y * (~cut).to(y.dtype)[:, None]


def draw_aug(n, g, h=H, w=W):
    rh, rw = int(h * TRANSLATION + 0.5), int(w * TRANSLATION + 0.5)
    sh, sw = int(h * CUTOUT + 0.5), int(w * CUTOUT + 0.5)
    return {"brightness": torch.rand(n, generator=g), "saturation": torch.rand(n, generator=g),
            "contrast": torch.rand(n, generator=g),
            "shift_h": torch.randint(-rh, rh + 1, (n,), generator=g), "shift_w": torch.randint(-rw, rw + 1, (n,), generator=g),
            "cutout_h": torch.randint(0, h + 1 - sh % 2, (n,), generator=g),
            "cutout_w": torch.randint(0, w + 1 - sw % 2, (n,), generator=g)}


def pick(x, idx):
    """Frames idx [B, K] of [B, C, T, H, W] -> [B * K, C, H, W], sample-major."""
    return torch.stack([x[b, :, idx[b]] for b in range(x.shape[0])]).permute(0, 2, 1, 3, 4).reshape(-1, *x.shape[1:2], *x.shape[3:])


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


def run_case(name, prediction, zero_snr, kind, band, mixed, teacher, dino, out, seed, dtype):
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
    wide = (lambda v: v) if dtype == torch.float64 else (lambda v: v.float())
    loss = (torch.sqrt((wide(mp) - wide(mt)) ** 2 + HUBER_C ** 2) - HUBER_C).mean()

    # The frame discriminator on the teacher backbone. Real frames: images with their own captions
    # in the mixed cases, the clip's own frames and caption otherwise (both code paths).
    disc = Disc([32] * 4 if dino is not None else [32, 64, 64], g).to(dtype)
    adv = {"g_frames": torch.randint(0, T, (B, K), generator=g), "d_frames": torch.randint(0, T, (B, K), generator=g),
           "real_frames": torch.randint(0, T, (B, K), generator=g)}
    side = 2 * H if dino is not None else H  # DiffAugment runs on decoded pixels for DINOv2, on latents otherwise
    augs = {name_: draw_aug(B * K, g, side, side) for name_ in ("g_aug", "d_fake_aug", "d_real_aug")}
    if dino is not None:
        adv["decode"] = torch.randn(3, C, generator=g) * 0.5
        dino_ = copy.deepcopy(dino).to(dtype)
        decode = adv["decode"].to(dtype)
        features = lambda frames, aug, ctx_: dino_features(dino_, decode, frames, aug)
    else:
        features = lambda frames, aug, ctx_: teacher_features(teacher, augment(frames, aug), ctx_)
    adv["gp_alpha"] = torch.rand(B * K, generator=g)
    images = bool(mixed_t.any())
    if images:
        adv["real"] = torch.randn(B * K, C, H, W, generator=g)
        adv["real_text"] = torch.randn(B * K, L, D, generator=g)
        real, real_text = adv["real"].to(dtype), adv["real_text"].to(dtype)
    else:
        real, real_text = pick(x0_real, adv["real_frames"]), text.repeat_interleave(K, 0)
    ctx = text.repeat_interleave(K, 0)
    disc.requires_grad_(False)  # the generator's loss flows through D without training it
    feats_g = features(pick(pred, adv["g_frames"]), augs["g_aug"], ctx)
    loss_g = -disc(feats_g, ctx.mean(1)).mean()
    (loss + DISC_WEIGHT * loss_g).backward()
    disc.requires_grad_(True)
    with torch.no_grad():
        f_fake = features(pick(pred.detach(), adv["d_frames"]), augs["d_fake_aug"], ctx)
        f_real = features(real, augs["d_real_aug"], real_text)
    hinge = F.relu(1 - disc(f_real, real_text.mean(1))).mean() + F.relu(1 + disc(f_fake, ctx.mean(1))).mean()
    a = adv["gp_alpha"].to(dtype).view(-1, 1, 1)
    mix = [(a * r + (1 - a) * f_).requires_grad_(True) for r, f_ in zip(f_real, f_fake)]
    grads = torch.autograd.grad(disc(mix, ctx.mean(1)).sum(), mix, create_graph=True)
    gp = ((torch.sqrt(sum(gr.pow(2).flatten(1).sum(1) for gr in grads)) - 1) ** 2).mean()
    (hinge + GP_WEIGHT * gp).backward()

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
    for n, v in disc.state_dict().items():
        tensors["disc/" + n] = v
    for n, p in disc.named_parameters():
        tensors["grad_disc/" + n] = p.grad
    for n, v in adv.items():
        tensors["adv/" + n] = v
    for a_name, d_ in augs.items():
        for n, v in d_.items():
            tensors[f"adv/{a_name}/{n}"] = v
    suffix = "_f64" if dtype == torch.float64 else ""
    save_file({k_: v.contiguous() for k_, v in tensors.items()}, os.path.join(out, name + suffix + ".safetensors"))
    return {"loss": loss.item(), "loss_g": loss_g.item(), "loss_d": hinge.item(), "gp": gp.item()}


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
    torch.manual_seed(2)
    dino = Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, mlp_ratio=4,
                                    image_size=DINO_SIZE, patch_size=14, layerscale_value=0.5,
                                    attn_implementation="eager")).eval()
    with torch.no_grad():
        for _, p in sorted(dino.named_parameters()):
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    dino.requires_grad_(False)
    dino.save_pretrained(os.path.join(out, "dinov2"), safe_serialization=True)
    cases = {}
    seed = 10
    for kind, band in [("raw", "low"), ("diff", "low"), ("freq", "low"), ("freq", "high"), ("learn", "low")]:
        for mixed in ([False, False, False], [True, False, True]):
            name = f"eps_{kind}{'_' + band if kind == 'freq' else ''}_{'mixed' if any(mixed) else 'real'}"
            cases[name] = ("epsilon", False, kind, band, mixed, seed)
            seed += 1
    cases["x0_zsnr_learn_mixed"] = ("sample", True, "learn", "low", [True, False, True], seed)
    for kind, mixed in (("learn", [False] * 3), ("learn", [True, False, True]), ("raw", [True, False, True])):
        seed += 1
        cases[f"eps_{kind}_{'mixed' if any(mixed) else 'real'}_dino"] = ("epsilon", False, kind, "low", mixed, seed)
    for name, (prediction, zero_snr, kind, band, mixed, seed) in cases.items():
        backbone = "dinov2" if name.endswith("_dino") else "teacher"
        cases[name] = {"prediction": prediction, "zero_snr": zero_snr, "motion": kind, "freq_band": band,
                       "backbone": backbone, "dino_size": DINO_SIZE}
        cases[name].update({"disc_weight": DISC_WEIGHT, "gp_weight": GP_WEIGHT, "disc_frames": K, "cmap_dim": CMAP,
                            "virtual_batch": VIRTUAL_BATCH, "disc_timestep": DISC_T})
        for dtype, suffix in ((torch.float32, ""), (torch.float64, "_f64")):
            for key, v in run_case(name, prediction, zero_snr, kind, band, mixed, teacher,
                                   dino if backbone == "dinov2" else None, out, seed, dtype).items():
                cases[name][key + suffix] = v
    with open(os.path.join(out, "cases.json"), "w") as fh:
        json.dump(cases, fh, indent=1)


if __name__ == "__main__":
    main()
