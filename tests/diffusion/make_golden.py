"""Golden tensors for tests/diffusion: diffusers' DDIMScheduler and LCMScheduler on random inputs.

Writes one safetensors file; __metadata__["cases"] lists the cases as JSON. Each case stores the
timesteps, the initial sample, the model outputs fed at every step, the noise (LCM), and the
scheduler's prev_sample and denoised/pred_original_sample after every step.

The "ps/" tensors are the per-sample forms (one timestep per batch element, as consistency
distillation draws them): DDPMScheduler.add_noise and LCMScheduler's boundary scalings with a
timestep tensor, DDIMScheduler.step applied sample by sample, and the DDIM solver and x0
prediction of the LCM/MCM training scripts (diffusers examples/consistency_distillation,
yhZhai/mcm), restated below because they are not importable."""
import json
import sys

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, LCMScheduler
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
for spacing, offset, steps, pred, clip, eta in [
        ("leading", 1, 50, "epsilon", False, 0.0), ("leading", 0, 7, "epsilon", False, 0.0),
        ("trailing", 0, 8, "epsilon", False, 0.0), ("trailing", 0, 3, "v_prediction", False, 0.0),
        ("linspace", 0, 10, "epsilon", True, 0.0), ("linspace", 0, 1, "sample", False, 0.0),
        ("trailing", 0, 999, "epsilon", False, 0.0), ("leading", 1, 1, "epsilon", False, 0.0),
        ("trailing", 0, 10, "v_prediction", False, 1.0), ("leading", 1, 6, "epsilon", False, 0.5)]:
    name = f"ddim/{spacing}/{offset}/{steps}/{pred}/{int(clip)}" + (f"/eta{eta}" if eta else "")
    s = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=clip,
                      set_alpha_to_one=False, steps_offset=offset, timestep_spacing=spacing, prediction_type=pred)
    s.set_timesteps(steps)
    x = torch.randn(SHAPE, generator=g)
    put(name + "/timesteps", s.timesteps.to(torch.int64))
    put(name + "/x", x)
    outs, prevs, x0s, noises = [], [], [], []
    for t in s.timesteps[:12]:  # at most 12 steps stored per case
        m = torch.randn(SHAPE, generator=g)
        z = torch.randn(SHAPE, generator=g) if eta else None
        r = s.step(m, t, x, eta=eta, variance_noise=z)
        outs.append(m); prevs.append(r.prev_sample); x0s.append(r.pred_original_sample)
        if eta:
            noises.append(z)
        x = r.prev_sample
    put(name + "/model_out", torch.stack(outs)); put(name + "/prev", torch.stack(prevs)); put(name + "/denoised", torch.stack(x0s))
    if eta:
        put(name + "/noise", torch.stack(noises))
    cases.append({"kind": "ddim", "name": name, "spacing": spacing, "offset": offset, "steps": steps, "prediction": pred,
                  "clip": clip, "set_alpha_to_one": False, "eta": eta})

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

# Zero terminal SNR (abar_999 = 0, which diffusers replaces by 2^-24 in this scheduler), from their
# own generator so the cases above do not move.
gz = torch.Generator().manual_seed(11)
for steps, pred in [(4, "v_prediction"), (2, "sample")]:
    name = f"dpm/trailing/0/{steps}/{pred}/zero_snr"
    s = DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                    timestep_spacing="trailing", prediction_type=pred, rescale_betas_zero_snr=True)
    s.set_timesteps(steps)
    x = torch.randn(SHAPE, generator=gz)
    put(name + "/timesteps", s.timesteps.to(torch.int64))
    put(name + "/x", x)
    outs, prevs = [], []
    for t in s.timesteps:
        m = torch.randn(SHAPE, generator=gz)
        x = s.step(m, t, x).prev_sample
        outs.append(m); prevs.append(x)
    put(name + "/model_out", torch.stack(outs)); put(name + "/prev", torch.stack(prevs))
    cases.append({"kind": "dpm", "name": name, "spacing": "trailing", "offset": 0, "steps": steps, "prediction": pred,
                  "zero_snr": True})

# ---- Per-sample timesteps ("ps/"), from their own generator so the cases above do not move.
gp = torch.Generator().manual_seed(7)
B = 6
PS_SHAPE = (B, 4, 3, 5, 5)
BETAS = dict(beta_start=0.00085, beta_end=0.012)
ts = torch.tensor([0, 19, 259, 500, 998, 999])
put("ps/t", ts)
for sched, rescale in (("scaled_linear", False), ("linear", False), ("scaled_linear", True)):
    s = DDPMScheduler(beta_schedule=sched, rescale_betas_zero_snr=rescale, **BETAS)
    name = f"ps/add_noise/{sched}/{int(rescale)}"
    x0, eps = torch.randn(PS_SHAPE, generator=gp), torch.randn(PS_SHAPE, generator=gp)
    put(name + "/x0", x0); put(name + "/eps", eps)
    put(name + "/out", s.add_noise(x0, eps, ts))
    put(name + "/out_f16", s.add_noise(x0.half(), eps.half(), ts))

for scaling in (4.0, 10.0):
    s = LCMScheduler(beta_schedule="scaled_linear", timestep_scaling=scaling, **BETAS)
    c_skip, c_out = s.get_scalings_for_boundary_condition_discrete(ts)
    put(f"ps/scalings/{scaling}/c_skip", c_skip); put(f"ps/scalings/{scaling}/c_out", c_out)

# DDIMScheduler.step one sample at a time, each from its own t to t - 20 (50 steps; t = 19 steps
# to -1, i.e. the final alpha).
t_ddim = torch.tensor([19, 39, 499, 999, 19, 259])
put("ps/ddim/t", t_ddim)
for pred in ("epsilon", "v_prediction", "sample"):
    for one in (True, False):
        s = DDIMScheduler(beta_schedule="scaled_linear", set_alpha_to_one=one, prediction_type=pred, clip_sample=False, **BETAS)
        s.set_timesteps(50)
        name = f"ps/ddim/{pred}/{int(one)}"
        x, m = torch.randn(PS_SHAPE, generator=gp), torch.randn(PS_SHAPE, generator=gp)
        rs = [s.step(m[b:b + 1], t_ddim[b], x[b:b + 1]) for b in range(B)]
        put(name + "/x", x); put(name + "/model_out", m)
        put(name + "/prev", torch.cat([r.prev_sample for r in rs])); put(name + "/x0", torch.cat([r.pred_original_sample for r in rs]))


# The training scripts' helpers (LCM's train_lcm_distill_*.py, MCM's main.py), verbatim in effect.
def extract_into_tensor(a, t, x_shape):
    b, *_ = t.shape
    return a.gather(-1, t).reshape(b, *((1,) * (len(x_shape) - 1)))


class DDIMSolver:
    def __init__(self, alpha_cumprods, timesteps=1000, ddim_timesteps=50):
        step_ratio = timesteps // ddim_timesteps
        self.ddim_timesteps = (np.arange(1, ddim_timesteps + 1) * step_ratio).round().astype(np.int64) - 1
        self.ddim_alpha_cumprods_prev = np.asarray([alpha_cumprods[0]] + alpha_cumprods[self.ddim_timesteps[:-1]].tolist())
        self.ddim_timesteps = torch.from_numpy(self.ddim_timesteps).long()
        self.ddim_alpha_cumprods_prev = torch.from_numpy(self.ddim_alpha_cumprods_prev)

    def ddim_step(self, pred_x0, pred_noise, timestep_index):
        alpha_cumprod_prev = extract_into_tensor(self.ddim_alpha_cumprods_prev, timestep_index, pred_x0.shape)
        dir_xt = (1.0 - alpha_cumprod_prev).sqrt() * pred_noise
        return alpha_cumprod_prev.sqrt() * pred_x0 + dir_xt


ac = DDPMScheduler(beta_schedule="scaled_linear", **BETAS).alphas_cumprod
solver = DDIMSolver(ac.numpy())
index = torch.tensor([0, 1, 24, 49, 0, 12])
topk = 1000 // 50
start_timesteps = solver.ddim_timesteps[index]
timesteps = start_timesteps - topk
timesteps = torch.where(timesteps < 0, torch.zeros_like(timesteps), timesteps)
x0, eps = torch.randn(PS_SHAPE, generator=gp), torch.randn(PS_SHAPE, generator=gp)
put("ps/solver/index", index); put("ps/solver/t", start_timesteps); put("ps/solver/s", timesteps)
put("ps/solver/x0", x0); put("ps/solver/eps", eps)
put("ps/solver/x_prev", solver.ddim_step(x0, eps, index))  # float64, as the solver's tables

alpha_schedule, sigma_schedule = torch.sqrt(ac), torch.sqrt(1 - ac)
x, m = torch.randn(PS_SHAPE, generator=gp), torch.randn(PS_SHAPE, generator=gp)
alphas = extract_into_tensor(alpha_schedule, ts, x.shape)
sigmas = extract_into_tensor(sigma_schedule, ts, x.shape)
put("ps/x0/x", x); put("ps/x0/model_out", m)
put("ps/x0/epsilon", (x - sigmas * m) / alphas)
put("ps/x0/v_prediction", alphas * x - sigmas * m)

save_file(out, sys.argv[1], metadata={"cases": json.dumps(cases)})
