"""`mcm distill` as users run it, on a tiny teacher trained in the fixture, with the frame
discriminator on (teacher backbone, real frames from the image shards): the same global batch
gives the same student and discriminator for 1 and 2 ranks (with and without accumulation); a run
killed with SIGKILL and resumed equals the uninterrupted one bitwise (CPU, deterministic mode), the
motion head's EMA target, the discriminator, its spectral-norm vectors and the penalty weight included; SIGTERM checkpoints and exits 75 (interrupted); the student folder loads in diffusers
and the LoRA file injected by PEFT into the teacher gives the merged student's output; every motion
representation trains; bad input is refused with the key or file named. Run by ctest
(stages.distill, label mpi)."""
import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import unittest

import numpy as np
import torch
from safetensors.numpy import load_file

from test_pipeline import MCM, MPIEXEC, TINY, latest, mcm, verify
from test_teacher import FAST as TEACHER_FAST, SMALL, wait_for

# A tiny student: few adapters, a narrow motion head, a few steps, mixed trajectories on.
# The fixture's data: videos and the image set the discriminator's real frames come from.
DATA = ["synth.videos=12", "synth.images=8", "synth.image_shards=2", "prep.encode_images=true"]
FAST = ["distill.lora_rank=4", "distill.lora_alpha=4", "distill.motion_hidden=8", "distill.motion_groups=4",
        "distill.warmup_steps=2", "distill.lr=1e-3", "distill.mixed_prob=0.5", "distill.eval_prompts=0", "run.threads=1",
        "train.log_every=1"]
STUDENT = os.path.join("distill", "student")


def command(run_dir, sets, np_=1):
    cmd = [MCM, "distill", "--config", TINY, "--set", f"run.dir={run_dir}"]
    for s in SMALL + TEACHER_FAST + FAST + list(sets):
        cmd += ["--set", s]
    if np_ > 1:
        cmd = [MPIEXEC, "-n", str(np_), "--oversubscribe"] + cmd
    return cmd


def distill(run_dir, sets=(), np_=1, check=True):
    p = subprocess.run(command(run_dir, sets, np_), capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"distill exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def lora(run_dir):
    return load_file(os.path.join(run_dir, STUDENT, "lora", "pytorch_lora_weights.safetensors"))


def losses(run_dir):
    with open(os.path.join(run_dir, "distill", "metrics.jsonl")) as f:
        return [(m["step"], m["loss"]) for m in map(json.loads, f)]


class Distill(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="mcm-distill-")
        cls.base = os.path.join(cls.tmp, "base")
        mcm(["synth"], cls.base, DATA)
        mcm(["prep"], cls.base, DATA)
        mcm(["teacher"], cls.base, DATA + TEACHER_FAST + ["teacher.steps=20", "teacher.batch=4", "teacher.micro_batch=4"])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def fresh(self, name, teacher=True):
        """A run folder holding the prep shards and (unless told otherwise) the teacher."""
        d = os.path.join(self.tmp, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(os.path.join(d, "data"))
        shutil.copytree(os.path.join(self.base, "prep"), os.path.join(d, "prep"))
        shutil.copy(os.path.join(self.base, "data", "vocab.txt"), os.path.join(d, "data", "vocab.txt"))
        if teacher:
            for sub in ("unet", "scheduler"):
                shutil.copytree(os.path.join(self.base, "teacher", sub), os.path.join(d, "teacher", sub))
        return d

    def test_same_global_batch_same_student(self):
        # As the teacher's engine test: one global batch of 4 split five ways. Every draw (grid index,
        # guidance, noise, mixed trajectory) is keyed by sample id, so only float rounding differs
        # (oneDNN's kernels vary with the batch size). The consistency loss magnifies it more than
        # the teacher's: d = pred - target is a small difference of O(1) outputs, the teacher's
        # guided x0 multiplies its error by up to w + 1 = 16, and the pseudo-Huber gradient
        # d / sqrt(d^2 + c^2) turns over within c = 0.001 of zero. Measured between 1-rank splits
        # (1x4 vs 1x1x4): first loss 1e-4 relative, gradient norm 0.5%. So every comparison is
        # against that floor: the 2-rank runs within 10x the spread among the 1-rank runs. (A split-
        # dependent draw would move the first loss by tens of percent.) The discriminator's local
        # batch norm groups frames within one forward, so its groups are one clip's frames here
        # (disc_virtual_batch = disc_frames): then no group depends on the split either.
        sets = {"1x4": (1, 4), "1x2x2": (1, 2), "1x1x4": (1, 1), "2x2": (2, 2), "2x1x2": (2, 1)}
        runs = {}
        for name, (np_, micro) in sets.items():
            d = self.fresh(f"gb-{name}")
            distill(d, ["distill.batch=4", f"distill.micro_batch={micro}", "distill.steps=3", "distill.disc_virtual_batch=2"],
                    np_=np_)
            runs[name] = d
        ref = lora(runs["1x4"])
        disc = lambda d: {k: v for k, v in load_file(os.path.join(d, "distill", "checkpoints", "step-00000003",
                                                                  "model.safetensors")).items() if k.startswith("disc.")}
        dref = disc(runs["1x4"])
        ddiff = {n: max(float(np.max(np.abs(dref[k] - disc(d)[k]))) for k in dref) for n, d in runs.items()}
        print("distill, same global batch, max |disc - disc(1x4)| after 3 steps:", {n: f"{v:.3g}" for n, v in ddiff.items()})
        diff = {n: max(float(np.max(np.abs(ref[k] - lora(d)[k]))) for k in ref) for n, d in runs.items()}
        floor = max(diff["1x2x2"], diff["1x1x4"])
        print("distill, same global batch, max |lora - lora(1x4)| after 3 steps:", {n: f"{v:.3g}" for n, v in diff.items()})
        first = {}
        for n, d in runs.items():
            with open(os.path.join(d, "distill", "metrics.jsonl")) as f:
                first[n] = json.loads(f.readline())
        spread = lambda key: max(abs(first[n][key] - first["1x4"][key]) for n in ("1x2x2", "1x1x4"))
        for name in ("2x2", "2x1x2"):
            with self.subTest(name):
                self.assertLessEqual(diff[name], max(10 * floor, 1e-7))
                self.assertLessEqual(ddiff[name], max(10 * max(ddiff["1x2x2"], ddiff["1x1x4"]), 1e-6))
                self.assertEqual(set(disc(runs[name])), set(dref))
                for key in ("loss", "grad_norm"):
                    self.assertLessEqual(abs(first[name][key] - first["1x4"][key]), max(10 * spread(key), 1e-7), key)
                    self.assertLess(abs(first[name][key] - first["1x4"][key]), 0.05 * first["1x4"][key], key)
                self.assertAlmostEqual(first[name]["disc"]["loss"], first["1x4"]["disc"]["loss"], delta=1e-4)
                self.assertEqual(first[name]["terms"]["mixed_share"], first["1x4"]["terms"]["mixed_share"])
        self.assertEqual(latest(runs["2x2"], "distill")["world_size"], 2)

    def test_sigkill_resume_is_bitwise(self):
        sets = ["distill.steps=6", "distill.batch=2", "distill.micro_batch=2", "train.checkpoint_every=2",
                "train.deterministic=true"]
        ref = self.fresh("kill-ref")
        distill(ref, sets)
        run = self.fresh("kill-run")
        proc = subprocess.Popen(command(run, sets), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(os.path.join(run, "distill", "checkpoints", "step-00000002", "DONE"), proc)
        proc.kill()
        proc.wait()
        p = distill(run, sets)
        self.assertRegex(p.stderr + p.stdout, r"resumed from .*step-0000000[2-6]")
        wa, wb = lora(ref), lora(run)
        for k in wa:
            self.assertTrue(np.array_equal(wa[k], wb[k]), f"{k} differs after resume")
        self.assertEqual(losses(ref), losses(run))
        # The motion head's EMA target, the spectral-norm vectors and the penalty weight are training
        # state, the discriminator a trained model: all in the checkpoints, all equal too.
        last = lambda d, f: os.path.join(d, "distill", "checkpoints", "step-00000006", f)
        for f in ("state.safetensors", "model.safetensors", "optimizer_disc.safetensors"):
            sa, sb = load_file(last(ref, f)), load_file(last(run, f))
            self.assertEqual(set(sa), set(sb), f)
            for k in sa:
                self.assertTrue(np.array_equal(sa[k], sb[k]), f"{f}: {k}")
        state = load_file(last(ref, "state.safetensors"))
        self.assertTrue(any(k.startswith("motion_head_target.") for k in state))
        self.assertTrue(any(k.endswith("weight_u") for k in state))
        self.assertIn("disc.gp_weight_and_last_raise", state)
        self.assertEqual(verify(run).returncode, 0, verify(run).stdout + verify(run).stderr)

    def test_sigterm_checkpoints_and_exits_75(self):
        sets = ["distill.steps=400", "distill.batch=2", "distill.micro_batch=2", "train.checkpoint_every=1000"]
        run = self.fresh("term")
        proc = subprocess.Popen(command(run, sets), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(os.path.join(run, "distill", "metrics.jsonl"), proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 75, err)  # stages::kExitInterrupted: resume by running it again
        ckpts = sorted(os.listdir(os.path.join(run, "distill", "checkpoints")))
        self.assertEqual(len(ckpts), 1)
        rec = latest(run, "distill")
        self.assertEqual(rec["status"], "interrupted")
        self.assertEqual(int(ckpts[0][5:]), rec["interrupted"]["step"])
        self.assertFalse(os.path.exists(os.path.join(run, STUDENT)))

    def test_student_loads_in_diffusers_and_peft(self):
        from diffusers import UNet3DConditionModel
        from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
        from safetensors.torch import load_file as load_torch

        run = self.fresh("export")
        distill(run, ["distill.steps=3", "distill.batch=2", "distill.micro_batch=2"])
        torch.manual_seed(0)
        student = UNet3DConditionModel.from_pretrained(os.path.join(run, STUDENT, "unet")).eval()
        base = UNet3DConditionModel.from_pretrained(os.path.join(run, "teacher", "unet")).eval()
        sd = {k[len("unet."):]: v for k, v in load_torch(os.path.join(run, STUDENT, "lora", "pytorch_lora_weights.safetensors")).items()}
        modules = sorted({k.rsplit(".lora_", 1)[0] for k in sd})
        inject_adapter_in_model(LoraConfig(r=4, lora_alpha=4, target_modules=modules), base, adapter_name="mcm")
        res = set_peft_model_state_dict(base, sd, adapter_name="mcm")
        self.assertFalse(res.unexpected_keys)
        cfg = student.config
        x = torch.randn(2, cfg.in_channels, 4, 4, 4)
        ctx = torch.randn(2, 8, cfg.cross_attention_dim)
        t = torch.tensor([999, 259])
        with torch.no_grad():
            a, b = student(x, t, encoder_hidden_states=ctx).sample, base(x, t, encoder_hidden_states=ctx).sample
        self.assertLess(float((a - b).abs().max() / b.abs().max()), 1e-5)
        # The adapters moved the student away from the teacher.
        teacher = UNet3DConditionModel.from_pretrained(os.path.join(run, "teacher", "unet")).eval()
        with torch.no_grad():
            c = teacher(x, t, encoder_hidden_states=ctx).sample
        self.assertGreater(float((a - c).abs().max()), 1e-6)
        with open(os.path.join(run, STUDENT, "scheduler", "scheduler_config.json")) as f:
            sched = json.load(f)
        self.assertEqual(sched["_class_name"], "LCMScheduler")
        self.assertEqual(sched["timestep_scaling"], 4.0)
        self.assertEqual(sched["prediction_type"], "sample")
        rec = latest(run, "distill")
        self.assertEqual(rec["status"], "complete")
        kinds = {o.get("kind") for o in rec["outputs"]}
        self.assertTrue({"student_weights", "student_lora", "student_scheduler"} <= kinds, kinds)
        # Same config, data and teacher: the second run reuses the student.
        p = distill(run, ["distill.steps=3", "distill.batch=2", "distill.micro_batch=2"])
        self.assertIn("reused", p.stdout + p.stderr)

    def test_every_motion_representation_trains(self):
        for motion in ("raw", "diff", "freq", "learn"):
            with self.subTest(motion):
                run = self.fresh(f"motion-{motion}")
                distill(run, [f"distill.motion={motion}", "distill.steps=2", "distill.batch=2", "distill.micro_batch=2",
                              "distill.freq_band=high"])
                ls = losses(run)
                self.assertEqual([s for s, _ in ls], [1, 2])
                self.assertTrue(all(np.isfinite(l) for _, l in ls), ls)
                with open(os.path.join(run, "distill", "metrics.jsonl")) as f:
                    m = json.loads(f.readline())
                self.assertTrue({"l_cd", "g_adv", "d_hinge", "gp", "d_real", "d_fake"} <= set(m["terms"]), m["terms"])
                self.assertGreater(m["disc"]["grad_norm"], 0)
        # The LCM baseline: raw M, no discriminator, trained by the same stage; real frames from the
        # clips instead of the image set also train.
        for name, sets in (("lcm", ["distill.motion=raw", "distill.disc_weight=0"]), ("clip-real", ["distill.disc_real=clip"])):
            with self.subTest(name):
                run = self.fresh(f"variant-{name}")
                p = distill(run, sets + ["distill.steps=2", "distill.batch=2", "distill.micro_batch=2"])
                with open(os.path.join(run, "distill", "metrics.jsonl")) as f:
                    m = json.loads(f.readline())
                if name == "lcm":
                    self.assertNotIn("disc", m)
                    self.assertEqual(set(m["terms"]), {"l_cd", "mixed_share"})
                    self.assertIn("no discriminator", p.stderr + p.stdout)
                else:
                    self.assertIn("real frames from the clips", p.stderr + p.stdout)

    def test_fidelity_control_is_the_untrained_student(self):
        # distill/fidelity.json scores the student, the student before training (the teacher through
        # the same LCM sampler) and the teacher's DDIM, from the same noise per prompt; each prompt's
        # entry carries the checksum of its clip's pixels. With a learning rate that leaves the LoRA
        # below float32's resolution of the merged weights, the student is the untrained one and
        # every clip is bitwise the control's; a learning rate that moves the LoRA changes them, and
        # the teacher's guided DDIM is a different sampler. Two ranks: prompts are dealt across them.
        def run_with(name, lr):
            run = self.fresh(name)
            p = distill(run, ["distill.steps=2", "distill.batch=2", "distill.micro_batch=1", f"distill.lr={lr}",
                              "distill.disc_weight=0", "distill.eval_prompts=4"], np_=2)
            with open(os.path.join(run, "distill", "fidelity.json")) as f:
                return run, p, json.load(f)

        def pixels(fid, method, steps):
            rows = fid[method][steps]["per_prompt"]
            self.assertEqual([r["index"] for r in rows], [0, 1, 2, 3])
            return [r["pixels"] for r in rows]

        run, p, fid = run_with("fidelity-control", "1e-12")
        self.assertIn("untrained student (LCM)", p.stderr + p.stdout)
        self.assertEqual(set(fid), {"student_lcm", "untrained_lcm", "teacher_ddim", "eval_guidance"})
        for steps in ("1", "2", "4", "8"):
            self.assertEqual(pixels(fid, "student_lcm", steps), pixels(fid, "untrained_lcm", steps), steps)
            self.assertNotEqual(pixels(fid, "teacher_ddim", steps), pixels(fid, "untrained_lcm", steps), steps)
            for r in fid["untrained_lcm"][steps]["per_prompt"]:
                self.assertTrue({"triangle_score", "corner_score", "foreground_fraction", "frames_used"} <= set(r), r)
        self.assertEqual(set(latest(run, "distill")["fidelity"]), {"student_lcm", "untrained_lcm", "teacher_ddim"})
        trained, _, moved = run_with("fidelity-control-trained", "1e-1")
        for steps in ("1", "4"):
            self.assertEqual(pixels(moved, "untrained_lcm", steps), pixels(fid, "untrained_lcm", steps), steps)
            self.assertNotEqual(pixels(moved, "student_lcm", steps), pixels(moved, "untrained_lcm", steps), steps)

        # bench/cd_probe on the same run: the teacher's folder given as a student is the untrained
        # student to the bit (moved 0 at every grid point, the same errors); the trained student moved,
        # and its last checkpoint (the adapters on the teacher, unmerged) is the same network up to the
        # rounding of the merge. At the grid's first point the next one down is s = 0, where f is x_s
        # itself: the consistency error there is the flow-map error.
        out = os.path.join(trained, "probe.json")
        ckpts = sorted(glob.glob(os.path.join(trained, "distill", "checkpoints", "step-*")))
        self.assertTrue(ckpts)
        cmd = [os.path.join(os.path.dirname(MCM), "bench", "cd_probe"), "--config", TINY, "--set", f"run.dir={trained}",
               "--student", os.path.join(trained, "teacher", "unet"), "--student", os.path.join(trained, STUDENT, "unet"),
               "--checkpoint", ckpts[-1], "--prompts", "3", "--threads", "1", "--json", out]
        for s in SMALL + TEACHER_FAST + FAST:
            cmd += ["--set", s]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("flow-map error", p.stdout)
        with open(out) as f:
            probe = json.load(f)
        nets = probe["networks"]
        same, student, base = (nets[os.path.join(trained, "teacher", "unet")], nets[os.path.join(trained, STUDENT, "unet")],
                               nets["untrained"])
        self.assertEqual(len(base), 50)
        self.assertEqual([r["t"] for r in base], list(range(19, 1000, 20)))
        for a, b in zip(same, base):
            self.assertEqual(a["moved"], 0.0, a)
            self.assertEqual((a["flow_map"], a["consistency"]), (b["flow_map"], b["consistency"]))
        self.assertTrue(all(r["moved"] > 1e-4 for r in student), student)
        for a, b in zip(nets[ckpts[-1]], student):
            self.assertAlmostEqual(a["flow_map"], b["flow_map"], delta=1e-4 * b["flow_map"] + 1e-6)
        for rows in (base, student):
            self.assertEqual(rows[0]["consistency"], rows[0]["flow_map"])
            self.assertTrue(all(r["dependence"] > 0 and r["train_consistency"] > 0 for r in rows))
        self.assertEqual([g["t"] for g in probe["guidance_gap"]], list(range(19, 1000, 20)))
        self.assertTrue(all(g["generated"] > 0 and g["real"] > 0 for g in probe["guidance_gap"]))
        self.assertEqual(set(probe["end_fidelity"]["accuracy"]), {"colour", "shape", "direction", "all"})
        self.assertEqual(probe["end_fidelity"]["clips"], 3, probe["end_fidelity"])
        # A checkpoint whose adapters do not fit the configured LoRA is named, with the key to check.
        bad = [cmd[0], "--config", TINY, "--set", f"run.dir={trained}", "--checkpoint", ckpts[-1], "--prompts", "1",
               "--threads", "1"]
        for s in SMALL + TEACHER_FAST + FAST + ["distill.lora_rank=3"]:
            bad += ["--set", s]
        p = subprocess.run(bad, capture_output=True, text=True, timeout=600)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn(os.path.join(ckpts[-1], "model.safetensors"), p.stderr)
        self.assertIn("distill.lora_rank = 3", p.stderr)

    def test_dinov2_backbone_trains(self):
        # MCM's own backbone: a transformers Dinov2Model folder (tiny and random here; facebook/
        # dinov2-small in real runs) judging decoded frames resized to disc_image_size.
        from transformers import Dinov2Config, Dinov2Model
        torch.manual_seed(0)
        folder = os.path.join(self.tmp, "dinov2-small-random")
        Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, image_size=28,
                                 patch_size=14)).save_pretrained(folder, safe_serialization=True)
        run = self.fresh("dinov2")
        p = distill(run, ["distill.disc_backbone=dinov2", f"distill.disc_backbone_path={folder}",
                          "distill.disc_image_size=28", "distill.steps=2", "distill.batch=2", "distill.micro_batch=2"])
        self.assertIn("discriminator on the dinov2 backbone (4 heads)", p.stderr + p.stdout)
        with open(os.path.join(run, "distill", "metrics.jsonl")) as f:
            m = [json.loads(line) for line in f]
        self.assertEqual([x["step"] for x in m], [1, 2])
        self.assertTrue(all(np.isfinite(x["terms"]["g_adv"]) and x["disc"]["grad_norm"] > 0 for x in m), m)
        # A missing backbone folder is named.
        p = distill(self.fresh("dinov2-missing"), ["distill.disc_backbone=dinov2", f"distill.disc_backbone_path={folder}-x"],
                    check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(f"no DINOv2 at {folder}-x", p.stderr)

    def test_bad_input(self):
        run = self.fresh("errors")
        for sets, msg in [(["distill.motion=flow"], "distill.motion"),
                          (["distill.freq_band=mid"], "distill.freq_band"),
                          (["distill.w_min=9", "distill.w_max=3"], "distill.w_min = 9"),
                          (["distill.guidance_t_min=500", "distill.guidance_t_max=100"],
                           "distill.guidance_t_min = 500, distill.guidance_t_max = 100"),
                          (["distill.motion_hidden=10", "distill.motion_groups=4"], "distill.motion_hidden = 10"),
                          (["distill.mixed_prob=1.5"], "distill.mixed_prob = 1.5"),
                          (["distill.solver_steps=3"], "distill.solver_steps = 3 does not divide"),
                          (["distill.disc_backbone=resnet"], "distill.disc_backbone"),
                          (["distill.disc_real=video"], "distill.disc_real"),
                          (["distill.disc_virtual_batch=3"], "distill.disc_virtual_batch = 3 does not divide the 4 frames"),
                          (["distill.disc_backbone=dinov2"], "distill.disc_backbone_path"),
                          (["distill.out=teacher"], "distill.out = \"teacher\": must be a folder name under run.dir"),
                          (["distill.out=a/b"], "distill.out = \"a/b\""),
                          ([f"models.teacher.path={self.tmp}/nowhere/unet"], "nowhere/unet")]:
            with self.subTest(sets[0]):
                p = distill(run, sets, check=False)
                self.assertNotEqual(p.returncode, 0)
                self.assertIn(msg, p.stderr)
        # A teacher whose scheduler settings cannot be read is named by file.
        bad = self.fresh("bad-scheduler")
        with open(os.path.join(bad, "teacher", "scheduler", "scheduler_config.json"), "w") as f:
            f.write('{"beta_schedule": ')
        p = distill(bad, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertRegex(p.stderr, r"teacher scheduler .*scheduler_config\.json")
        with open(os.path.join(bad, "teacher", "scheduler", "scheduler_config.json"), "w") as f:
            json.dump({"beta_schedule": "squaredcos_cap_v2", "prediction_type": "sample"}, f)
        p = distill(bad, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('beta_schedule "squaredcos_cap_v2" is not supported', p.stderr)
        # Real frames from an image set: none there, or of another latent shape than the videos'.
        no_images = self.fresh("no-images")
        for n in os.listdir(os.path.join(no_images, "prep")):
            if n.startswith("image-"):
                os.remove(os.path.join(no_images, "prep", n))
        p = distill(no_images, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("no image latent shards", p.stderr)
        self.assertIn('set distill.disc_real = "clip"', p.stderr)
        other = os.path.join(self.tmp, "other-res")
        shutil.rmtree(other, ignore_errors=True)
        small = ["synth.videos=2", "synth.video_shards=1", "synth.images=4", "synth.image_shards=1", "prep.resolution=8"]
        mcm(["synth"], other, small)
        mcm(["prep"], other, small)
        for n in os.listdir(os.path.join(other, "prep")):
            if n.startswith("image-") and n.endswith(".h5"):
                shutil.copy(os.path.join(other, "prep", n), os.path.join(no_images, "prep", n))
        p = distill(no_images, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertRegex(p.stderr, r"image shards .* hold latents \[12, 4, 4\].* frames are \[12, 8, 8\]")
        self.assertIn('distill.disc_real = "clip"', p.stderr)
        no_teacher = self.fresh("no-teacher", teacher=False)
        p = distill(no_teacher, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("run `mcm teacher` first", p.stderr)


if __name__ == "__main__":
    unittest.main()
