"""bench/gpu_steps: the GPU rows of bench/train_step and bench/distill_step, at ModelScope size.

`mcm teacher` and `mcm distill` run the way users run them (one rank on one GPU, train.precision
"auto" = bf16 autocast with fp32 master weights) on bench/modelscope_size.toml: ModelScopeT2V's
UNet architecture, 4 clips of 16 x 32 x 32 latents per step. Beside each, the same step written
in PyTorch (bench/train_step_torch.py, bench/distill_step_torch.py with --device cuda
--precision bf16: diffusers + PEFT, fused AdamW) on the same model config, batch and dtype.
Reports the median step time after warm-up, the peak memory of torch's caching allocator on each
side, and the achieved TFLOP/s of the teacher step (model FLOPs counted by PyTorch's
FlopCounterMode, the same work for both sides). Writes bench/results/gpu_steps.json.

The inputs (synth + prep of bench/modelscope_size.toml) are made first if --base has none."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
MCM = os.path.join(ROOT, "build", "mcm")
PY = os.path.join(ROOT, ".venv", "bin", "python")
CFG = os.path.join(ROOT, "bench", "modelscope_size.toml")

ap = argparse.ArgumentParser()
ap.add_argument("--base", default=os.path.join(ROOT, "bench", "work", "gpu", "base"))
ap.add_argument("--work", default=os.path.join(ROOT, "bench", "work", "gpu"))
ap.add_argument("--steps", type=int, default=8)
ap.add_argument("--skip", type=int, default=3, help="warm-up steps left out of the medians")
ap.add_argument("--only", default="teacher,distill", help="which rows: teacher, distill or both")
ap.add_argument("--device", default="cuda", help="cpu: a smoke test of this script (with --set to shrink the model)")
ap.add_argument("--set", action="append", default=[], help="extra config overrides for both stages")
ap.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "gpu_steps.json"))
args = ap.parse_args()
only = set(args.only.split(","))


def sh(cmd, log):
    print("+", " ".join(cmd), flush=True)
    with open(log, "w") as f:
        p = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        with open(log) as f:
            sys.exit(f"{' '.join(cmd)} exited {p.returncode}\n{f.read()[-4000:]}")
    with open(log) as f:
        return f.read()


def last_json(text):
    return json.loads([l for l in text.splitlines() if l.startswith("{")][-1])


def ours(stage, run):
    cmd = [MCM, stage, "--config", CFG, "--set", f"run.dir={run}", "--set", f"{stage}.steps={args.steps}"]
    for s in args.set:
        cmd += ["--set", s]
    sh(cmd, os.path.join(args.work, f"{stage}.log"))
    with open(os.path.join(run, stage, "metrics.jsonl")) as f:
        rows = [json.loads(l) for l in f if l.strip()]
    timed = [r for r in rows if r["step"] > args.skip]
    return {"median_s": statistics.median(r["seconds"]["total"] for r in timed), "steps": len(timed),
            "split_s": {k: statistics.median(r["seconds"][k] for r in timed) for k in timed[0]["seconds"]},
            "memory_gib": rows[-1].get("cuda_memory"), "last_loss": rows[-1]["loss"]}


if not os.path.isdir(os.path.join(args.base, "prep")):
    for stage in ("synth", "prep"):
        sh([MCM, stage, "--config", CFG, "--set", f"run.dir={args.base}"], os.path.join(args.work, f"{stage}.log"))
run = os.path.join(args.work, "run")
gpu = subprocess.run([PY, "-c", "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu', torch.__version__)"],
                     capture_output=True, text=True).stdout.strip()
results = {"config": {"file": "bench/modelscope_size.toml", "steps": args.steps, "skipped": args.skip,
                      "precision": "bf16 autocast, fp32 master weights", "device": gpu}}
if "teacher" in only or not os.path.isdir(os.path.join(run, "teacher", "unet")):
    shutil.rmtree(run, ignore_errors=True)
    os.makedirs(run)
    for sub in ("prep", "data"):
        shutil.copytree(os.path.join(args.base, sub), os.path.join(run, sub))
    o = ours("teacher", run)
    t = last_json(sh([PY, os.path.join(ROOT, "bench", "train_step_torch.py"), "--unet", os.path.join(run, "teacher", "unet"),
                      "--prep", os.path.join(run, "prep"), "--batch", "4", "--steps", str(args.steps - args.skip),
                      "--warmup", str(args.skip), "--device", args.device, "--precision", "bf16", "--lr", "1e-5",
                      "--threads", str(os.cpu_count())],
                     os.path.join(args.work, "teacher_torch.log")))
    results["teacher"] = {"ours": o, "pytorch": t, "speedup": t["median_s"] / o["median_s"], "params": t["params"],
                          "step_tflop": t["step_flops"] / 1e12,
                          "ours_tflops": t["step_flops"] / o["median_s"] / 1e12,
                          "pytorch_tflops": t["step_flops"] / t["median_s"] / 1e12}
if "distill" in only:
    lora = next((x.split("=")[1] for x in args.set if x.startswith("distill.lora_rank=")), "64")
    shutil.rmtree(os.path.join(run, "distill"), ignore_errors=True)
    o = ours("distill", run)
    t = last_json(sh([PY, os.path.join(ROOT, "bench", "distill_step_torch.py"), "--run", run, "--batch", "4",
                      "--steps", str(args.steps - args.skip), "--warmup", str(args.skip), "--device", args.device,
                      "--precision", "bf16", "--lora_rank", lora, "--threads", str(os.cpu_count())],
                     os.path.join(args.work, "distill_torch.log")))
    results["distill"] = {"ours": o, "pytorch": t, "speedup": t["median_s"] / o["median_s"]}

print(f"GPU: {gpu}")
print("| measure | ours | PyTorch | ratio | target |")
print("|---|---|---|---|---|")
if "teacher" in results:
    r = results["teacher"]
    print(f"| teacher train step, ModelScope size ({r['params']/1e9:.2f} B), batch 4 x 16 x 32 x 32 | "
          f"{r['ours']['median_s']*1e3:.0f} ms | {r['pytorch']['median_s']*1e3:.0f} ms | {r['speedup']:.2f}x | >= 1.00x |")
    print(f"| teacher step achieved TFLOP/s ({r['step_tflop']:.1f} TFLOP per step) | {r['ours_tflops']:.0f} | "
          f"{r['pytorch_tflops']:.0f} | | |")
    om, tm = r["ours"]["memory_gib"] or {}, r["pytorch"]
    print(f"| teacher step peak memory allocated / reserved | {om.get('allocated_peak_gib', float('nan')):.1f} / "
          f"{om.get('reserved_peak_gib', float('nan')):.1f} GiB | {tm.get('allocated_peak_gib', float('nan')):.1f} / {tm.get('reserved_peak_gib', float('nan')):.1f} GiB | | |")
if "distill" in results:
    r = results["distill"]
    print(f"| MCM distill step (G + D), ModelScope size, LoRA 64, batch 4 | {r['ours']['median_s']*1e3:.0f} ms | "
          f"{r['pytorch']['median_s']*1e3:.0f} ms | {r['speedup']:.2f}x | >= 1.00x |")
    om, tm = r["ours"]["memory_gib"] or {}, r["pytorch"]
    print(f"| distill step peak memory allocated / reserved | {om.get('allocated_peak_gib', float('nan')):.1f} / "
          f"{om.get('reserved_peak_gib', float('nan')):.1f} GiB | {tm.get('allocated_peak_gib', float('nan')):.1f} / {tm.get('reserved_peak_gib', float('nan')):.1f} GiB | | below |")
os.makedirs(os.path.dirname(args.json), exist_ok=True)
with open(args.json, "w") as f:
    json.dump(results, f, indent=1)
print(f"wrote {args.json}")
