"""Golden tensors for tests/diffusion: diffusers' DDIMScheduler and LCMScheduler on random inputs.

Writes one safetensors file; __metadata__["cases"] lists the cases as JSON. Each case stores the
timesteps, the initial sample, the model outputs fed at every step, the noise (LCM), and the
scheduler's prev_sample and denoised/pred_original_sample after every step."""
import json
import sys

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, LCMScheduler
from safetensors.torch import save_file

SHAPE = (2, 4, 3, 5, 5)  # [B, C, T, H, W] video latents
out, cases = {}, []


def put(name, t):
    out[name] = t.contiguous()


for sched in ("scaled_linear", "linear"):
    for rescale in (False, True):
        s = DDIMScheduler(beta_schedule=sched, beta_start=0.00085, beta_end=0.012, rescale_betas_zero_snr=rescale)
        put(f"abar/{sched}/{int(rescale)}", s.alphas_cumprod)

g = torch.Generator().manual_seed(0)
for spacing, offset, steps, pred, clip in [("leading", 1, 50, "epsilon", False), ("leading", 0, 7, "epsilon", False),
                                           ("trailing", 0, 8, "epsilon", False), ("trailing", 0, 3, "v_prediction", False),
                                           ("linspace", 0, 10, "epsilon", True), ("linspace", 0, 1, "sample", False),
                                           ("trailing", 0, 999, "epsilon", False), ("leading", 1, 1, "epsilon", False)]:
    name = f"ddim/{spacing}/{offset}/{steps}/{pred}/{int(clip)}"
    s = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=clip,
                      set_alpha_to_one=False, steps_offset=offset, timestep_spacing=spacing, prediction_type=pred)
    s.set_timesteps(steps)
    x = torch.randn(SHAPE, generator=g)
    put(name + "/timesteps", s.timesteps.to(torch.int64))
    put(name + "/x", x)
    outs, prevs, x0s = [], [], []
    for t in s.timesteps[:12]:  # at most 12 steps stored per case
        m = torch.randn(SHAPE, generator=g)
        r = s.step(m, t, x)
        outs.append(m); prevs.append(r.prev_sample); x0s.append(r.pred_original_sample)
        x = r.prev_sample
    put(name + "/model_out", torch.stack(outs)); put(name + "/prev", torch.stack(prevs)); put(name + "/denoised", torch.stack(x0s))
    cases.append({"kind": "ddim", "name": name, "spacing": spacing, "offset": offset, "steps": steps, "prediction": pred,
                  "clip": clip, "set_alpha_to_one": False})

for steps, scaling, original in [(1, 4.0, 50), (2, 4.0, 50), (4, 4.0, 50), (8, 4.0, 50), (4, 10.0, 50), (3, 10.0, 25)]:
    name = f"lcm/{steps}/{scaling}/{original}"
    s = LCMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, timestep_scaling=scaling,
                     original_inference_steps=original)
    s.set_timesteps(steps)
    x = torch.randn(SHAPE, generator=g)
    put(name + "/timesteps", s.timesteps.to(torch.int64))
    put(name + "/x", x)
    outs, noises, prevs, dens = [], [], [], []
    gen = torch.Generator().manual_seed(1000 + steps)
    twin = torch.Generator().manual_seed(1000 + steps)  # replays the scheduler's noise draws
    for i, t in enumerate(s.timesteps):
        m = torch.randn(SHAPE, generator=g)
        noise = torch.randn(SHAPE, generator=twin) if i + 1 < len(s.timesteps) else torch.zeros(SHAPE)
        r = s.step(m, t, x, generator=gen)
        outs.append(m); noises.append(noise); prevs.append(r.prev_sample); dens.append(r.denoised)
        x = r.prev_sample
    for k, v in (("model_out", outs), ("noise", noises), ("prev", prevs), ("denoised", dens)):
        put(f"{name}/{k}", torch.stack(v))
    cases.append({"kind": "lcm", "name": name, "steps": steps, "scaling": scaling, "original": original})

for spacing, offset, steps, pred in [("linspace", 0, 20, "epsilon"), ("linspace", 0, 1, "epsilon"), ("linspace", 0, 2, "epsilon"),
                                     ("leading", 1, 8, "epsilon"), ("trailing", 0, 4, "v_prediction"), ("linspace", 0, 25, "sample")]:
    name = f"dpm/{spacing}/{offset}/{steps}/{pred}"
    s = DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, timestep_spacing=spacing,
                                    steps_offset=offset, prediction_type=pred)
    s.set_timesteps(steps)
    x = torch.randn(SHAPE, generator=g)
    put(name + "/timesteps", s.timesteps.to(torch.int64))
    put(name + "/x", x)
    outs, prevs = [], []
    for t in s.timesteps:  # a whole trajectory: the solver carries history between steps
        m = torch.randn(SHAPE, generator=g)
        x = s.step(m, t, x).prev_sample
        outs.append(m); prevs.append(x)
    put(name + "/model_out", torch.stack(outs)); put(name + "/prev", torch.stack(prevs))
    cases.append({"kind": "dpm", "name": name, "spacing": spacing, "offset": offset, "steps": steps, "prediction": pred})

save_file(out, sys.argv[1], metadata={"cases": json.dumps(cases)})
