"""`mcm run` as users run it: every stage in order on 2 ranks under mpiexec into one run folder
(synth, prep, teacher, distill, the LCM baseline, sample, eval, report) on a small configuration; a second
run skips every stage; a failing stage stops the run with its name and keeps what was finished,
and the next run resumes there; a run killed in the middle of a stage resumes that stage from its
checkpoint. Run by ctest (stages.run, label mpi)."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from test_pipeline import MCM, TINY, latest, verify

FAST = ["synth.videos=12", "synth.images=8", "synth.image_shards=2", "teacher.channels=32", "teacher.levels=1",
        "teacher.cross_attention_levels=1", "teacher.head_dim=16", "teacher.norm_groups=8", "teacher.eval_prompts=0",
        "teacher.steps=10", "distill.steps=4", "distill.lora_rank=4", "distill.lora_alpha=4", "distill.motion_hidden=8",
        "distill.motion_groups=4", "distill.eval_prompts=0", "sample.count=4", "sample.steps=[1,2]",
        "eval.detector_steps=100", "run.threads=1"]
STAGES = ["synth", "prep", "teacher", "distill", "baseline", "sample", "eval", "report"]


def run(run_dir, sets=(), check=True, flags=()):
    cmd = [MCM, "run", "--config", TINY, "--set", f"run.dir={run_dir}", *flags]
    for s in FAST + list(sets):
        cmd += ["--set", s]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"mcm run exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


class Run(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="mcm-run-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_whole_pipeline_then_skip_then_resume_after_a_failure(self):
        d = os.path.join(self.tmp, "run")
        p = run(d)
        for k, s in enumerate(STAGES):
            self.assertIn(f"[mcm run] stage {k + 1}/8: {s} on 2 rank(s)", p.stdout)
            self.assertIn(f"[mcm run] stage {k + 1}/8: {s} done in", p.stdout)
        self.assertIn("all 8 stages complete", p.stdout)
        for f in ("teacher/unet/config.json", "distill/student/unet/config.json", "distill_lcm/student/unet/config.json",
                  "sample/student_2step.h5", "sample/baseline_1step.h5", "sample/teacher_ddim_50step.h5",
                  "sample/previews/student_1step.gif", "eval/metrics.json", "report/index.html", "report/summary.md"):
            self.assertTrue(os.path.exists(os.path.join(d, f)), f)
        with open(os.path.join(d, "eval", "metrics.json")) as f:
            m = json.load(f)
        self.assertEqual(len(m["jobs"]), 9)  # teacher DDIM and DPM x 2, DDIM 50, student x 2, baseline x 2
        self.assertEqual(m["protocol"]["world_size"], 2)
        lcm = [r for r in json.load(open(os.path.join(d, "manifest.json")))["records"] if r["stage"] == "distill"]
        self.assertEqual([r["motion"] for r in lcm], ["learn", "raw"])
        self.assertEqual(verify(d).returncode, 0, verify(d).stdout)

        # Nothing changed: every stage is skipped.
        p = run(d)
        for k, s in enumerate(STAGES):
            self.assertIn(f"[mcm run] stage {k + 1}/8: {s}: complete (record", p.stdout)

        # --dry-run prints the plan and launches nothing: unchanged, every stage is complete; with a
        # changed setting every stage would be launched again (skipping goes by the whole config's
        # hash; each stage then reuses what the change does not affect), each with its command.
        def records():
            with open(os.path.join(d, "manifest.json")) as f:
                return len(json.load(f)["records"])
        before_records = records()
        p = run(d, flags=["--dry-run"])
        self.assertIn("[mcm run] stage 8/8: report: complete (record", p.stdout)
        p = run(d, ["eval.detector_steps=101"], flags=["--dry-run"])
        self.assertIn("[mcm run] stage 1/8: synth: would run `mpiexec -n 2", p.stdout)
        self.assertIn("mcm distill --config", p.stdout)
        self.assertIn("--set distill.out=distill_lcm`", p.stdout)  # the baseline's own overrides
        self.assertIn("[mcm run] stage 8/8: report: would run", p.stdout)
        self.assertNotIn("done in", p.stdout)
        self.assertEqual(records(), before_records)

        # A stage that fails stops the run, names itself, and keeps everything before it. (A
        # changed configuration re-launches every stage; each reuses its outputs the change does
        # not affect: the teacher's weights are not rewritten.)
        weights = os.path.join(d, "teacher", "unet", "diffusion_pytorch_model.safetensors")
        before = os.path.getmtime(weights)
        bad = os.path.join(self.tmp, "not-torchscript.pt")
        with open(bad, "w") as f:
            f.write("not a model")
        p = run(d, [f"eval.detector={json.dumps(bad)}"], check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("mcm run: stage eval failed", p.stderr)
        self.assertIn("not a TorchScript file", p.stderr)
        self.assertIn("[mcm run] stage 6/8: sample done", p.stdout)
        self.assertEqual(os.path.getmtime(weights), before)
        # Back to the first configuration: its records are complete, nothing runs.
        p = run(d)
        self.assertIn("[mcm run] stage 7/8: eval: complete", p.stdout)
        # A lost file: the stage that made it runs again (only that file), and the stages after it.
        os.remove(os.path.join(d, "sample", "student_1step.h5"))
        p = run(d)
        self.assertIn("[mcm run] stage 5/8: baseline: complete", p.stdout)
        self.assertIn("[mcm run] stage 6/8: sample on 2 rank(s)", p.stdout)
        self.assertIn("[mcm run] stage 7/8: eval on 2 rank(s)", p.stdout)
        self.assertEqual(latest(d, "sample")["sampled"], 1)

    def test_a_run_killed_mid_stage_resumes_from_the_stage_checkpoint(self):
        # `mcm run` and every rank under it killed (SIGKILL to the session) after distill's first
        # checkpoint: the same command skips the finished stages and distill resumes from its
        # checkpoint rather than from step 0.
        d = os.path.join(self.tmp, "killed")
        sets = ["distill.steps=60", "train.checkpoint_every=10", 'pipeline.stages=["synth","prep","teacher","distill"]']
        cmd = [MCM, "run", "--config", TINY, "--set", f"run.dir={d}"]
        for x in FAST + sets:
            cmd += ["--set", x]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        done = os.path.join(d, "distill", "checkpoints", "step-00000010", "DONE")
        deadline = time.time() + 600
        try:
            while not os.path.exists(done):
                self.assertIsNone(p.poll(), "mcm run ended before distill's first checkpoint")
                self.assertLess(time.time(), deadline, "no distill checkpoint within 10 minutes")
                time.sleep(0.05)
        finally:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        self.assertEqual(latest(d, "distill")["status"], "running")  # killed: its record never closed
        p = run(d, sets)
        self.assertIn("[mcm run] stage 3/4: teacher: complete (record", p.stdout)
        self.assertIn("[mcm run] stage 4/4: distill done in", p.stdout)
        rec = latest(d, "distill")
        self.assertEqual(rec["status"], "complete")
        self.assertEqual(rec["steps"], 60)
        self.assertGreaterEqual(rec["resumed_from"], 10)
        self.assertEqual(verify(d).returncode, 0, verify(d).stdout)

    def test_bad_pipeline_config(self):
        d = os.path.join(self.tmp, "bad")
        for sets, msg in ((["pipeline.ranks=0"], "pipeline.ranks"), (["pipeline.stages=[\"synth\",\"train\"]"], "pipeline.stages")):
            p = run(d, sets, check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn(msg, p.stderr)


if __name__ == "__main__":
    unittest.main()
