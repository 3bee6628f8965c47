"""`mcm sample` and `mcm eval` as users run them, on a tiny teacher, an MCM student and an LCM baseline trained in
the fixture: every (method, step count) writes an HDF5 file that h5py reads (uint8 videos, prompts,
seeds) and previews that ffprobe reads; 1 and 2 ranks write the same bytes; every method starts
from the same noise; a re-run reuses what is complete and resumes an interrupted run at the first
missing file; a prompt file is read line by line, and its bad lines are refused with the line
number. `mcm eval` gives the same FVDs, caption-fidelity scores and frame quality on 1 and 2 ranks,
with the embedded detectors (trained on the run's clips and stills) or TorchScript ones with I3D's
and FID Inception's calling conventions, computes CLIP score through a TorchScript CLIP equal to the
same computation in Python, and records its protocol. `mcm report` turns that into index.html and
summary.md with every table, PNG plots and GIF grids that PIL reads, lineage by checksum from the
manifest, and a page that headless Chromium renders with its plots. Run by ctest (stages.sample, label mpi)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

from test_pipeline import MCM, MPIEXEC, TINY, latest, mcm, verify
from test_teacher import FAST as TEACHER_FAST, SMALL

DATA = ["synth.videos=12", "synth.images=8", "synth.image_shards=1", "prep.encode_images=true"]
DISTILL = ["distill.lora_rank=4", "distill.lora_alpha=4", "distill.motion_hidden=8", "distill.motion_groups=4",
           "distill.steps=4", "distill.batch=4", "distill.micro_batch=4", "distill.warmup_steps=1",
           "distill.eval_prompts=0", "distill.disc_real=clip", "run.threads=1"]
LCM = ["distill.out=distill_lcm", "distill.motion=raw", "distill.disc_weight=0"]
SAMPLE = ["sample.count=5", "sample.seeds=2", "sample.steps=[1,2]", "sample.batch=3", "sample.previews=4",
          "sample.methods=[\"teacher_ddim\",\"teacher_dpm\",\"student\",\"baseline\"]", "run.threads=1"]
JOBS = ["teacher_ddim_1step", "teacher_ddim_2step", "teacher_dpm_1step", "teacher_dpm_2step", "student_1step",
        "student_2step", "baseline_1step", "baseline_2step"]


def sample(run_dir, sets=(), np_=1, check=True):
    return mcm(["sample"], run_dir, SMALL + TEACHER_FAST + DATA + SAMPLE + list(sets), np_=np_, check=check)


class Sample(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="mcm-sample-")
        cls.base = os.path.join(cls.tmp, "base")
        common = SMALL + TEACHER_FAST + DATA
        mcm(["synth"], cls.base, common)
        mcm(["prep"], cls.base, common)
        mcm(["teacher"], cls.base, common + ["teacher.steps=10", "teacher.batch=4", "teacher.micro_batch=4"])
        mcm(["distill"], cls.base, common + DISTILL)
        mcm(["distill"], cls.base, common + DISTILL + LCM)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def fresh(self, name):
        d = os.path.join(self.tmp, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for sub in ("prep", "data", "teacher", "distill", "distill_lcm", "synth"):
            shutil.copytree(os.path.join(self.base, sub), os.path.join(d, sub),
                            ignore=shutil.ignore_patterns("checkpoints", "heartbeat"))
        return d

    def test_every_method_one_and_two_ranks(self):
        one, two = self.fresh("one"), self.fresh("two")
        sample(one)
        sample(two, np_=2)
        for job in JOBS:
            with h5py.File(os.path.join(one, "sample", f"{job}.h5"), "r") as a, \
                    h5py.File(os.path.join(two, "sample", f"{job}.h5"), "r") as b:
                v = a["videos"][:]
                self.assertEqual(v.dtype, np.uint8, job)
                self.assertEqual(v.shape, (10, 8, 16, 16, 3), job)  # 5 prompts x 2 seeds, tiny.toml's clip
                self.assertEqual(list(a["seed"][:]), [0, 1] * 5, job)
                self.assertEqual(list(a["prompt_index"][:]), [i // 2 for i in range(10)], job)
                prompts = [p.decode() for p in a["prompt"][:]]
                self.assertTrue(all(prompts[2 * i] == prompts[2 * i + 1] for i in range(5)), job)
                self.assertEqual(a.attrs["steps"], int(job.split("_")[-1][:-4]), job)
                # The same samples whatever the world size.
                np.testing.assert_array_equal(v, b["videos"][:], err_msg=job)
                self.assertEqual(prompts, [p.decode() for p in b["prompt"][:]], job)
                self.assertGreater(v.std(), 1.0, job)  # not a constant frame
            for ext, fmt in (("gif", "gif"), ("mp4", "mov,mp4,m4a,3gp,3g2,mj2")):
                p = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=format_name:stream=width,height",
                                    "-of", "json", os.path.join(one, "sample", "previews", f"{job}.{ext}")],
                                   capture_output=True, text=True)
                self.assertEqual(p.returncode, 0, p.stderr)
                info = json.loads(p.stdout)
                self.assertEqual(info["format"]["format_name"], fmt)
                self.assertEqual((info["streams"][0]["width"], info["streams"][0]["height"]), (256, 64), job)  # 4 x 16 px, x4
        # Seed 0 and seed 1 of a prompt differ; the student and the baseline differ from the same noise.
        with h5py.File(os.path.join(one, "sample", "student_2step.h5"), "r") as s, \
                h5py.File(os.path.join(one, "sample", "baseline_2step.h5"), "r") as b:
            self.assertFalse(np.array_equal(s["videos"][0], s["videos"][1]))
            self.assertFalse(np.array_equal(s["videos"][:], b["videos"][:]))
        rec = latest(one, "sample")
        self.assertEqual(rec["status"], "complete")
        self.assertEqual(rec["sampled"], len(JOBS))
        self.assertEqual(verify(one).returncode, 0, verify(one).stdout)
        with open(os.path.join(one, "sample", "samples.json")) as f:
            self.assertEqual(sorted(json.load(f)), sorted(JOBS))

    def test_rerun_reuses_and_resumes(self):
        run = self.fresh("resume")
        sample(run, ["sample.methods=[\"teacher_ddim\"]"])
        first = os.path.getmtime(os.path.join(run, "sample", "teacher_ddim_1step.h5"))
        # More methods: the finished one is reused, the others sampled.
        p = sample(run, ["sample.methods=[\"teacher_ddim\",\"student\"]"])
        self.assertIn("teacher_ddim_1step", p.stdout + p.stderr)
        self.assertIn("reused", p.stdout + p.stderr)
        self.assertEqual(os.path.getmtime(os.path.join(run, "sample", "teacher_ddim_1step.h5")), first)
        rec = latest(run, "sample")
        self.assertEqual((rec["reused"], rec["sampled"]), (2, 2))
        # Killed mid-run: the files written so far are reused, the rest sampled.
        os.remove(os.path.join(run, "sample", "student_2step.h5"))
        p = sample(run, ["sample.methods=[\"teacher_ddim\",\"student\"]"])
        rec = latest(run, "sample")
        self.assertEqual((rec["reused"], rec["sampled"]), (3, 1))

    def test_prompt_file(self):
        run = self.fresh("file")
        good = os.path.join(self.tmp, "prompts.txt")
        with open(good, "w", encoding="utf-8") as f:
            f.write("a red circle moves left slowly on a dark background\r\na blue square moves up quickly on a light background\n")
        sample(run, [f"sample.prompts={json.dumps(good)}", "sample.methods=[\"student\"]", "sample.steps=[1]"])
        with h5py.File(os.path.join(run, "sample", "student_1step.h5"), "r") as f:
            self.assertEqual([p.decode() for p in f["prompt"][:]],
                             ["a red circle moves left slowly on a dark background"] * 2 +
                             ["a blue square moves up quickly on a light background"] * 2)
        for name, content, msg in (("empty.txt", b"a red circle\n\na blue square\n", "line 2: empty prompt"),
                                   ("latin1.txt", b"a red circle\na caf\xe9 square\n", "line 2: invalid UTF-8"),
                                   ("none.txt", b"", "holds no prompts")):
            path = os.path.join(self.tmp, name)
            with open(path, "wb") as f:
                f.write(content)
            p = sample(run, [f"sample.prompts={json.dumps(path)}", "sample.methods=[\"student\"]"], check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn(msg, p.stderr)
            self.assertIn(name, p.stderr)

    def test_ablation_folders_are_sampled_like_the_student(self):
        # The LCM baseline's folder as an ablation: the same model from the same noise gives the
        # same videos as the baseline method, in a file of its own name.
        run = self.fresh("ablation")
        sample(run, ["sample.methods=[\"baseline\"]", "sample.steps=[1]", "sample.ablations=[\"distill_lcm\"]"])
        with h5py.File(os.path.join(run, "sample", "baseline_1step.h5")) as a, \
                h5py.File(os.path.join(run, "sample", "distill_lcm_1step.h5")) as b:
            np.testing.assert_array_equal(a["videos"][:], b["videos"][:])
        with open(os.path.join(run, "sample", "samples.json")) as f:
            self.assertEqual(json.load(f)["distill_lcm_1step"]["method"], "distill_lcm")

    def test_bad_config_and_missing_models(self):
        run = self.fresh("bad")
        for sets, msg in ((["sample.methods=[\"teacher_ddpm\"]"], "sample.methods"),
                          (["sample.steps=[0]"], "sample.steps holds 0"),
                          (["sample.steps=[\"4\"]"], "expected array of integers"),
                          (["sample.guidance=0.5"], "sample.guidance = 0.5"),
                          (["sample.ablations=[\"student\"]"], "which names a method"),
                          (["sample.ablations=[\"distill_raw\"]"], "(sample.ablations = \"distill_raw\")"),
                          (["sample.baseline=nowhere", "sample.methods=[\"baseline\"]"], "run `mcm distill` with distill.out = \"nowhere\""),
                          ([f"sample.prompts={json.dumps(os.path.join(self.tmp, 'missing.txt'))}"], "missing.txt")):
            p = sample(run, sets, check=False)
            self.assertNotEqual(p.returncode, 0, sets)
            self.assertIn(msg, p.stderr, sets)
        shutil.rmtree(os.path.join(run, "teacher"))
        p = sample(run, ["sample.methods=[\"teacher_dpm\"]"], check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("run `mcm teacher` first", p.stderr)


    def test_eval_one_and_two_ranks_and_a_torchscript_detector(self):
        run = self.fresh("eval")
        sample(run, ["sample.methods=[\"teacher_ddim\",\"student\"]", "sample.steps=[1]"])
        ev = ["eval.detector_steps=200", "eval.batch=4", "run.threads=1"]
        mcm(["eval"], run, SMALL + DATA + ev)
        with open(os.path.join(run, "eval", "metrics.json")) as f:
            one = json.load(f)
        mcm(["eval"], run, SMALL + DATA + ev, np_=2)
        with open(os.path.join(run, "eval", "metrics.json")) as f:
            two = json.load(f)
        self.assertEqual(sorted(one["jobs"]), ["student_1step", "teacher_ddim_1step"])
        for name, r in one["jobs"].items():
            self.assertGreater(r["fvd"], 0, name)
            self.assertAlmostEqual(r["fvd"], two["jobs"][name]["fvd"], delta=1e-6 * r["fvd"])
            self.assertEqual(r["samples"], 10)
            self.assertEqual(r["fidelity"]["clips"], 10)
            self.assertEqual(r["fidelity"], two["jobs"][name]["fidelity"])
            self.assertEqual(set(r["fidelity"]["p_value"]), {"colour", "shape", "direction", "all"})
        p = one["protocol"]
        self.assertEqual((p["frames"], p["height"], p["width"], p["features"]), (8, 16, 16, 16))
        self.assertEqual(p["reference"]["clips"], 24)  # 12 videos x 2 windows
        self.assertEqual(p["detector"]["kind"], "embedded synth-video-net")
        self.assertEqual((p["world_size"], two["protocol"]["world_size"]), (1, 2))
        self.assertEqual(p["detector"]["checksum"], two["protocol"]["detector"]["checksum"])  # the same training
        self.assertEqual(verify(run).returncode, 0, verify(run).stdout)
        # Frame quality against the 8 stills: the embedded frame detector, the same on 1 and 2 ranks.
        fq = p["frame_quality"]
        self.assertEqual(fq["stills"]["count"], 8)
        self.assertEqual(fq["detector"]["kind"], "embedded synth-frame-net")
        self.assertEqual(fq["features"], 12)
        self.assertEqual(fq["reference"]["videos"]["frames"], 24 * 8)
        self.assertGreater(fq["reference"]["videos"]["watermark_rate"], 0.8)  # synth stamps every video frame
        self.assertLess(fq["reference"]["stills"]["watermark_rate"], 0.2)     # and no still
        for name, r in one["jobs"].items():
            q, q2 = r["frame_quality"], two["jobs"][name]["frame_quality"]
            self.assertEqual(q["frames"], 80)
            self.assertGreater(q["frame_fd"], 0)
            self.assertAlmostEqual(q["frame_fd"], q2["frame_fd"], delta=1e-6 * q["frame_fd"])
            self.assertEqual((q["watermarked"], q["frames"]), (q2["watermarked"], q2["frames"]))
            self.assertAlmostEqual(q["sharpness"], q2["sharpness"], delta=1e-9 * q["sharpness"])
        # TorchScript detectors with StyleGAN-V's I3D and FID Inception signatures take the embedded
        # ones' places, and a TorchScript CLIP with OpenAI's methods gives CLIP score.
        code = ("import sys, torch\n"
                "class D(torch.nn.Module):\n"
                "    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False):\n"
                "        y = x.float() / 255.0 * 2 - 1 if rescale else x.float()\n"
                "        return torch.cat([y.mean(dim=(2, 3, 4)), y.std(dim=(2, 3, 4))], 1)\n"
                "class Flat(torch.nn.Module):\n"
                "    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False):\n"
                "        return x.float().mean(dim=(1, 2, 3, 4))\n"
                "class I(torch.nn.Module):\n"
                "    def forward(self, x: torch.Tensor, return_features: bool = False):\n"
                "        y = x.float() / 255.0\n"
                "        return torch.cat([y.mean(dim=(2, 3)), y.std(dim=(2, 3)), y[:, :, -2:, :].mean(dim=(2, 3))], 1)\n"
                "class Visual(torch.nn.Module):\n"
                "    def __init__(self):\n"
                "        super().__init__()\n"
                "        self.input_resolution = 24\n"
                "        self.proj = torch.nn.Linear(3 * 4 * 4, 8)\n"
                "    def forward(self, x: torch.Tensor):\n"
                "        return self.proj(torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1))\n"
                "class Clip(torch.nn.Module):\n"
                "    def __init__(self):\n"
                "        super().__init__()\n"
                "        self.visual = Visual()\n"
                "        self.token_embedding = torch.nn.Embedding(49408, 8)\n"
                "    @torch.jit.export\n"
                "    def encode_image(self, x: torch.Tensor):\n"
                "        return self.visual(x)\n"
                "    @torch.jit.export\n"
                "    def encode_text(self, t: torch.Tensor):\n"
                "        e = self.token_embedding(t)\n"
                "        return e.mean(1) + e[torch.arange(t.shape[0]), t.argmax(-1)]\n"
                "    def forward(self, x: torch.Tensor, t: torch.Tensor):\n"
                "        return self.encode_image(x), self.encode_text(t)\n"
                "torch.manual_seed(0)\n"
                "torch.jit.script(D()).save(sys.argv[1])\n"
                "torch.jit.script(I()).save(sys.argv[2])\n"
                "torch.jit.script(Clip()).save(sys.argv[3])\n"
                "torch.jit.script(Flat()).save(sys.argv[4])\n")
        det, inc, clip, flat = (os.path.join(self.tmp, n) for n in ("detector.pt", "inception.pt", "clip.pt", "flat.pt"))
        script = os.path.join(self.tmp, "make_detectors.py")
        with open(script, "w") as f:
            f.write(code)  # TorchScript compiles from source files
        subprocess.run([sys.executable, script, det, inc, clip, flat], check=True)
        import open_clip.tokenizer
        vocab = open_clip.tokenizer.default_bpe()
        mcm(["eval"], run, SMALL + DATA + ev + [f"eval.detector={json.dumps(det)}", f"eval.frame_detector={json.dumps(inc)}",
                                                f"eval.clip_model={json.dumps(clip)}", f"eval.clip_vocab={json.dumps(vocab)}"])
        with open(os.path.join(run, "eval", "metrics.json")) as f:
            ts = json.load(f)
        self.assertEqual(ts["protocol"]["detector"]["kind"], "torchscript")
        self.assertEqual(ts["protocol"]["features"], 6)
        self.assertEqual(ts["protocol"]["frame_quality"]["detector"]["kind"], "torchscript")
        self.assertEqual(ts["protocol"]["frame_quality"]["features"], 9)
        self.assertEqual(ts["protocol"]["clip_score"]["resolution"], 24)  # the model's visual.input_resolution
        self.assertTrue(all(r["fvd"] > 0 and r["frame_quality"]["frame_fd"] > 0 for r in ts["jobs"].values()))
        # CLIP score: the same computation in Python (open_clip's tokenizer; CLIP's resize of the
        # shorter side, bicubic antialiased, centre crop, normalisation; per-frame cosine x 100,
        # averaged over frames, then over clips).
        import torch
        model = torch.jit.load(clip)
        tok = open_clip.tokenizer.SimpleTokenizer()
        mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
        std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
        for name, r in ts["jobs"].items():
            with h5py.File(os.path.join(run, r["file"]), "r") as f:
                videos = torch.from_numpy(f["videos"][:])
                prompts = [p.decode() if isinstance(p, bytes) else p for p in f["prompt"][:]]
            n, t = videos.shape[:2]
            x = videos.reshape(n * t, *videos.shape[2:]).permute(0, 3, 1, 2).float() / 255
            x = torch.nn.functional.interpolate(x, size=(24, 24), mode="bicubic", align_corners=False, antialias=True)
            with torch.no_grad():
                ei = model.encode_image((x - mean) / std).double()
                et = model.encode_text(tok(prompts)).double()
            ei = ei / ei.norm(dim=1, keepdim=True)
            et = et / et.norm(dim=1, keepdim=True)
            want = (100 * (ei.view(n, t, -1) * et.view(n, 1, -1)).sum(2).mean(1)).mean().item()
            self.assertAlmostEqual(r["clip_score"]["mean"], want, delta=1e-4 * abs(want) + 1e-6, msg=name)
            self.assertEqual(r["clip_score"]["clips"], n)
        # mcm report on this run: every table, plot and grid, lineage from the manifest; it renders in
        # headless Chromium with its plots loaded.
        mcm(["report"], run, SMALL + DATA + ["report.grid_prompts=3"])
        self.check_report(run, ts)
        # Bad CLIP settings: a model without a vocabulary, a module without CLIP's methods.
        p = mcm(["eval"], run, SMALL + DATA + ev + [f"eval.clip_model={json.dumps(clip)}"], check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("eval.clip_vocab", p.stderr)
        p = mcm(["eval"], run, SMALL + DATA + ev + [f"eval.clip_model={json.dumps(det)}", f"eval.clip_vocab={json.dumps(vocab)}"],
                check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("has no method encode_image", p.stderr)
        # Bad input: no samples yet; a detector that is not TorchScript.
        empty = self.fresh("eval-empty")
        p = mcm(["eval"], empty, SMALL + DATA + ev, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("run `mcm sample` first", p.stderr)
        p = mcm(["eval"], run, SMALL + DATA + ev + [f"eval.detector={json.dumps(os.path.join(run, 'eval', 'metrics.json'))}"],
                check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("not a TorchScript file", p.stderr)
        p = mcm(["eval"], run, SMALL + DATA + ev + [f"eval.detector={json.dumps(flat)}"], check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("expected [B, D]", p.stderr)  # a detector with the wrong output shape
        p = mcm(["report"], empty, SMALL + DATA, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("run `mcm eval` first", p.stderr)

    def check_report(self, run, metrics):
        from PIL import Image
        rep = os.path.join(run, "report")
        with open(os.path.join(rep, "index.html")) as f:
            html = f.read()
        with open(os.path.join(rep, "summary.md")) as f:
            md = f.read()
        with open(os.path.join(run, "manifest.json")) as f:
            manifest = json.load(f)
        sample_sums = {o["path"]: o["checksum"] for r in manifest["records"] if r["stage"] == "sample" for o in r["outputs"]}
        for name, job in metrics["jobs"].items():
            self.assertIn(f'id="lineage-{name}"', html)
            self.assertIn(sample_sums[job["file"]], html)  # each number's sample file, by checksum
            self.assertIn(f"| {name} |", md)
        for title in ("FVD (", "CLIP score", "Caption fidelity", "Frame quality", "the paper's table", "Evaluation protocol"):
            self.assertIn(title, html)
        self.assertIn("| MCM (student) |", md)
        self.assertIn("| DDIM (teacher) |", md)
        self.assertIn("| MCM | 526 | 450 | 456 | 503 |", md)  # the paper's row
        plots = sorted(os.listdir(os.path.join(rep, "plots")))
        for want in ("fvd_vs_steps.png", "clip_vs_steps.png", "frame_fd_vs_steps.png", "loss_teacher.png", "loss_distill.png"):
            self.assertIn(want, plots)
        for png in plots:
            with Image.open(os.path.join(rep, "plots", png)) as im:
                self.assertEqual((im.format, im.size), ("PNG", (800, 400)), png)
                self.assertIn(f'src="plots/{png}"', html)
        for steps in (1,):
            with Image.open(os.path.join(rep, "grids", f"steps_{steps}.gif")) as im:
                self.assertEqual(im.n_frames, 8)  # one GIF frame per video frame
                self.assertEqual(im.size[1], 2 * (64 + 4) + 4)  # two methods (teacher DDIM, student) of 16 px x 4
        self.assertEqual(verify(run).returncode, 0, verify(run).stdout)
        shot = os.path.join(self.tmp, "report.png")
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        self.assertIsNotNone(chromium, "headless Chromium checks the report: scripts/setup.sh installs it")
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,4000",
                        f"--screenshot={shot}", "file://" + os.path.join(rep, "index.html")],
                       check=True, capture_output=True, timeout=120)
        with Image.open(shot) as im:
            colours = {c for _, c in im.convert("RGB").getcolors(1 << 20)}
        self.assertIn((31, 119, 180), colours)  # the plots' first series colour: the PNGs loaded and rendered
        self.assertIn((242, 242, 242), colours)  # the table headers' background: the stylesheet applied


if __name__ == "__main__":
    unittest.main()
