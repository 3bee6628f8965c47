"""bench/distill_step: one MCM distillation step (generator + discriminator) measured the way users
run it (`mcm distill`), beside the same step in PyTorch (bench/distill_step_torch.py: diffusers +
PEFT + the golden step's discriminator) on the same teacher, batch, dtype (fp32) and threads (1).

Rows: the step on CPU at the tiny size; the GPU rows (ModelScope-size UNet3D, bf16 autocast, peak
memory) are bench/gpu_steps.sh's. Medians over steps after warm-up;
two interleaved rounds per side, the faster kept (a shared 2-core machine varies +-15% run to run).
Writes bench/results/distill_step.json."""
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
TINY = os.path.join(ROOT, "configs", "tiny.toml")

ap = argparse.ArgumentParser()
ap.add_argument("--work", default=os.path.join(ROOT, "bench", "work", "distill_step"))
ap.add_argument("--batch", type=int, default=4, help="clips per step (one rank, no accumulation)")
ap.add_argument("--steps", type=int, default=12)
ap.add_argument("--skip", type=int, default=2, help="warm-up steps left out of the medians")
ap.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "distill_step.json"))
args = ap.parse_args()


def sh(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p.stdout


base = os.path.join(args.work, "base")
if not os.path.isdir(os.path.join(base, "teacher", "unet")):
    for stage, extra in (("synth", []), ("prep", []), ("teacher", ["teacher.steps=10", "teacher.eval_prompts=0"])):
        cmd = [MCM, stage, "--config", TINY, "--set", f"run.dir={base}"]
        for e in extra:
            cmd += ["--set", e]
        sh(cmd)


def ours(name):
    run = os.path.join(args.work, name)
    shutil.rmtree(run, ignore_errors=True)
    os.makedirs(run)
    for sub in ("prep", "data", "teacher"):
        shutil.copytree(os.path.join(base, sub), os.path.join(run, sub), ignore=shutil.ignore_patterns("checkpoints"))
    sets = ["run.threads=1", f"distill.steps={args.steps}", f"distill.batch={args.batch}",
            f"distill.micro_batch={args.batch}", "distill.eval_prompts=0", "train.log_every=1",
            "train.checkpoint_every=100000"]
    cmd = [MCM, "distill", "--config", TINY, "--set", f"run.dir={run}"]
    for s in sets:
        cmd += ["--set", s]
    sh(cmd)
    with open(os.path.join(run, "distill", "metrics.jsonl")) as f:
        rows = [json.loads(l) for l in f if l.strip()]
    rows = [r for r in rows if r["step"] > args.skip]
    return {k: statistics.median(r["seconds"][k] for r in rows) for k in rows[0]["seconds"]}


def torch_side():
    return json.loads(sh([PY, os.path.join(ROOT, "bench", "distill_step_torch.py"), "--run", base, "--batch",
                          str(args.batch), "--steps", str(args.steps - args.skip), "--warmup", str(args.skip),
                          "--threads", "1"]))


a, ta = ours("ours-a"), torch_side()
b, tb = ours("ours-b"), torch_side()
o = a if a["total"] <= b["total"] else b
t = ta if ta["median_s"] <= tb["median_s"] else tb
has_gpu = subprocess.run([PY, "-c", "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)"]).returncode == 0
results = {"config": {"batch": args.batch, "steps": args.steps, "skipped": args.skip, "threads": 1, "dtype": "fp32",
                      "device": "cpu", "model": "configs/tiny.toml teacher, LoRA 16, motion learn, teacher-backbone discriminator"},
           "step": {"ours_s": o["total"], "pytorch_s": t["median_s"], "speedup": t["median_s"] / o["total"],
                    "ours_split_s": o, "pytorch": t},
           "gpu": "GPU rows: bench/gpu_steps.sh" if has_gpu else
                  "no GPU on this machine: ModelScope-size rows by bench/gpu_steps.sh on a GPU"}
print("| measure | ours | other side | ratio | target |")
print("|---|---|---|---|---|")
print(f"| MCM distill step (G + D), CPU, tiny, batch {args.batch} | {o['total']*1e3:.0f} ms | PyTorch {t['median_s']*1e3:.0f} ms "
      f"| {results['step']['speedup']:.2f}x | >= 1.00x |")
print(f"| GPU | {results['gpu']} | | | |")
os.makedirs(os.path.dirname(args.json), exist_ok=True)
with open(args.json, "w") as f:
    json.dump(results, f, indent=1)
print(f"wrote {args.json}")
