"""slurm/ against a real Slurm: munged, slurmctld and slurmd on localhost (tests/slurm/cluster.py), the
jobs submitted by slurm/submit.sh exactly as a user would, on configs/tiny.toml with the small overlay
tests/slurm/small.toml. Run by ctest (slurm.submit, label slurm), about 5 minutes:
- the whole pipeline through Slurm to a report, every job recorded in the manifest;
- submitting the finished run again submits nothing;
- `scontrol requeue` in the middle of distill: the requeued job resumes and the student is bitwise the
  uninterrupted run's;
- a distill job whose time limit ends mid-run is signalled, checkpoints, requeues itself and finishes,
  one manifest record listing both attempts;
- a prep array task that fails cancels every job after it, and the manifest and the job log name the
  shard."""
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from cluster import Cluster

SRC = os.environ.get("MCM_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BIN = os.environ.get("MCM_BINARY_DIR", os.path.join(SRC, "build"))
MCM = os.path.join(BIN, "mcm")
SUBMIT = os.path.join(SRC, "slurm", "submit.sh")
TINY = os.path.join(SRC, "configs", "tiny.toml")
SMALL = os.path.join(SRC, "tests", "slurm", "small.toml")
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE"}

CLUSTER = None
TMP = None


def setUpModule():
    global CLUSTER, TMP
    TMP = tempfile.mkdtemp(prefix="mcm-slurm-")
    CLUSTER = Cluster(os.path.join(TMP, "cluster")).up()


def tearDownModule():
    if CLUSTER:
        subprocess.run(["scancel", "--user", "root"], env=CLUSTER.env, capture_output=True)
        CLUSTER.down()
    shutil.rmtree(TMP, ignore_errors=True)


def submit(run_dir, *sets, check=True):
    cmd = [SUBMIT, TINY, "--config", SMALL, "--set", f"run.dir={run_dir}"]
    for s in sets:
        cmd += ["--set", s]
    env = dict(CLUSTER.env, MCM_BIN=MCM)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"submit.sh exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    jobs = dict(re.findall(r"^(\w+): job (\d+)", p.stdout, re.M))
    return p, jobs


def wait_final(job_ids, timeout):
    """Until every job (every array task) is in a final state; returns {id: [records]}."""
    deadline = time.time() + timeout
    while True:
        recs = {j: CLUSTER.jobs(j) for j in job_ids}
        if all(r["JobState"] in FINAL for rs in recs.values() for r in rs):
            return recs
        if time.time() > deadline:
            raise AssertionError("jobs not finished in %d s:\n%s\n%s" % (
                timeout, CLUSTER.run(["squeue"]).stdout, logs(None)))
        time.sleep(1)


def logs(run_dir):
    out = []
    for f in sorted(glob.glob(os.path.join(run_dir or TMP, "**", "slurm", "*.out"), recursive=True)):
        with open(f, errors="replace") as fh:
            out.append(f"--- {f}\n{fh.read()[-3000:]}")
    return "\n".join(out)


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def manifest(run_dir):
    with open(os.path.join(run_dir, "manifest.json")) as f:
        return json.load(f)


def copy_for_distill(src, dst):
    """A run with src's data, prep shards and teacher (and manifest), no distillation yet."""
    os.makedirs(dst)
    for d in ("data", "prep", "teacher"):
        shutil.copytree(os.path.join(src, d), os.path.join(dst, d))
    shutil.copy(os.path.join(src, "manifest.json"), dst)


class Slurm(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.run_dir = os.path.join(TMP, "run")
        t0 = time.time()
        cls.submit_out, cls.jobs = submit(cls.run_dir)
        cls.final = wait_final(cls.jobs.values(), 600)
        cls.pipeline_s = time.time() - t0
        cls.distill_hashes = {r["config_hash"] for r in manifest(cls.run_dir)["records"] if r["stage"] == "distill"}

    def test_1_pipeline_through_slurm_to_a_report(self):
        self.assertEqual(list(self.jobs), ["synth", "prep", "teacher", "distill", "baseline", "sample", "eval", "report"],
                         self.submit_out.stdout)
        for name, jid in self.jobs.items():
            for r in self.final[jid]:
                self.assertEqual((r["JobState"], r["ExitCode"]), ("COMPLETED", "0:0"), f"{name}\n{logs(self.run_dir)}")
        self.assertEqual(len(self.final[self.jobs["prep"]]), 3)  # slurm.prep_tasks = 3 array tasks
        # The dependencies as submitted: sample waits for both distillations.
        self.assertIn(f"sample: job {self.jobs['sample']} (after {self.jobs['distill']} {self.jobs['baseline']})",
                      self.submit_out.stdout)
        for f in ("report/index.html", "report/summary.md", "eval/metrics.json", "distill/student/unet/config.json",
                  "distill_lcm/student/unet/config.json"):
            self.assertTrue(os.path.exists(os.path.join(self.run_dir, f)), f)
        m = manifest(self.run_dir)
        self.assertEqual(m["submissions"][-1]["jobs"], self.jobs)
        # Every record names the Slurm job that made it; prep is three parts, one per array task.
        for r in m["records"]:
            self.assertEqual(r["status"], "complete", r["stage"])
            self.assertIn("SLURM_JOB_ID", r["attempts"][0]["slurm"])
        prep = [r for r in m["records"] if r["stage"] == "prep"]
        self.assertEqual(sorted(r["part"]["index"] for r in prep), [0, 1, 2])
        self.assertEqual({r["slurm"]["SLURM_ARRAY_JOB_ID"] for r in prep}, {self.jobs["prep"]})
        self.assertEqual(sum(r["part"]["end_shard"] - r["part"]["first_shard"] for r in prep), 6)
        v = subprocess.run([MCM, "manifest", "verify", self.run_dir], capture_output=True, text=True)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        show = subprocess.run([MCM, "manifest", "show", self.run_dir], capture_output=True, text=True).stdout
        self.assertIn(f"distill={self.jobs['distill']}", show)
        self.assertIn(f"slurm job {self.jobs['prep']}_1 (", show)
        print(f"\n[slurm] whole pipeline through Slurm in {self.pipeline_s:.0f} s")

    def test_2_submitting_a_finished_run_again_submits_nothing(self):
        before = manifest(self.run_dir)
        p, jobs = submit(self.run_dir)
        self.assertEqual(jobs, {}, p.stdout)
        self.assertIn("nothing to submit", p.stdout)
        for s in ("synth", "prep", "teacher", "report"):
            self.assertIn(f"{s}: complete (record", p.stdout)
        after = manifest(self.run_dir)
        self.assertEqual(len(after["records"]), len(before["records"]))
        self.assertEqual(len(after["submissions"]), len(before["submissions"]))
        self.assertTrue(CLUSTER.queue_empty())
        # Another partition or more nodes is a launch setting: still nothing to submit.
        p, jobs = submit(self.run_dir, "slurm.nodes=2", 'slurm.time="20:00"')
        self.assertEqual(jobs, {}, p.stdout)

    def test_3_requeue_mid_distill_gives_the_uninterrupted_student(self):
        d = os.path.join(TMP, "requeue")
        copy_for_distill(self.run_dir, d)
        _, jobs = submit(d, 'pipeline.stages=["distill"]')
        jid = jobs["distill"]
        ckpt = os.path.join(d, "distill", "checkpoints")
        deadline = time.time() + 120
        while not os.path.isdir(os.path.join(ckpt, "step-00000020")):  # mid-run: 20 of 60 steps
            self.assertLess(time.time(), deadline, logs(d))
            time.sleep(0.2)
        CLUSTER.run(["scontrol", "requeue", jid])
        recs = wait_final([jid], 300)
        self.assertEqual((recs[jid][0]["JobState"], recs[jid][0]["Restarts"]), ("COMPLETED", "1"), logs(d))
        log = read(os.path.join(d, "slurm", f"mcm-distill-{jid}.out"))
        self.assertIn("distill checkpointed and stopped", log)
        m = re.search(r"resumed from \S+step-(\d+) at step (\d+)", log)
        self.assertIsNotNone(m, log)
        self.assertGreaterEqual(int(m.group(2)), 20)
        self.assertLess(int(m.group(2)), 60)
        for f in ("unet/diffusion_pytorch_model.safetensors", "lora/pytorch_lora_weights.safetensors"):
            with open(os.path.join(self.run_dir, "distill", "student", f), "rb") as a, \
                    open(os.path.join(d, "distill", "student", f), "rb") as b:
                self.assertTrue(a.read() == b.read(), f"{f} differs from the uninterrupted run's")
        # One record, two attempts of the same job.
        rec = [r for r in manifest(d)["records"] if r["stage"] == "distill"][-1]
        self.assertEqual(rec["status"], "complete")
        self.assertEqual([a["status"] for a in rec["attempts"]], ["interrupted", "complete"])
        self.assertEqual([a["slurm"]["SLURM_JOB_ID"] for a in rec["attempts"]], [jid, jid])
        self.assertEqual(rec["attempts"][0]["interrupted"]["signal"], "SIGTERM")

    def test_4_time_limit_signals_checkpoints_requeues_and_finishes(self):
        d = os.path.join(TMP, "timelimit")
        copy_for_distill(self.run_dir, d)
        # A 2-minute limit; USR1 50 s before it (Slurm may send it up to a minute earlier); 240 steps
        # (~80 s of training) outlast the first attempt's window.
        _, jobs = submit(d, 'pipeline.stages=["distill"]', "distill.steps=240", 'slurm.train_time="2"',
                         "slurm.signal_lead=50")
        jid = jobs["distill"]
        recs = wait_final([jid], 480)
        r = recs[jid][0]
        self.assertEqual(r["JobState"], "COMPLETED", logs(d))
        self.assertGreaterEqual(int(r["Restarts"]), 1, logs(d))
        log = read(os.path.join(d, "slurm", f"mcm-distill-{jid}.out"))
        self.assertIn("USR1: the time limit is near", log)
        self.assertIn("stop requested (SIGUSR1", log)
        self.assertIn("student written", log)
        rec = [x for x in manifest(d)["records"] if x["stage"] == "distill" and x["config_hash"] not in self.distill_hashes]
        self.assertEqual(len(rec), 1, "one distill record for every attempt")
        self.assertEqual(rec[0]["attempts"][0]["slurm"]["SLURM_JOB_ID"], jid)
        att = rec[0]["attempts"]
        self.assertEqual(len(att), int(r["Restarts"]) + 1)
        self.assertEqual(att[0]["status"], "interrupted")
        self.assertEqual(att[0]["interrupted"]["signal"], "SIGUSR1")
        self.assertEqual(att[-1]["status"], "complete")
        self.assertEqual([a["slurm"].get("SLURM_RESTART_COUNT", "0") for a in att], [str(i) for i in range(len(att))])
        self.assertEqual(rec[0]["status"], "complete")

    def test_5_failing_prep_task_cancels_downstream(self):
        d = os.path.join(TMP, "badprep")
        os.makedirs(d)
        shutil.copytree(os.path.join(self.run_dir, "data"), os.path.join(d, "data"))
        bad = os.path.join(d, "data", "videos", "00002.tar")
        with open(bad, "wb") as f:
            f.write(os.urandom(3000))  # not a tar: the shard cannot be read
        p, jobs = submit(d, 'pipeline.stages=["prep","teacher","distill","sample"]')
        self.assertEqual(list(jobs), ["prep", "teacher", "distill", "sample"], p.stdout)
        recs = wait_final(jobs.values(), 300)
        states = {t["ArrayTaskId"]: t["JobState"] for t in recs[jobs["prep"]]}
        self.assertEqual(states, {"0": "COMPLETED", "1": "FAILED", "2": "COMPLETED"}, logs(d))
        for s in ("teacher", "distill", "sample"):
            self.assertEqual(recs[jobs[s]][0]["JobState"], "CANCELLED", s)
        self.assertFalse(os.path.exists(os.path.join(d, "teacher")))
        log = read(os.path.join(d, "slurm", f"mcm-prep-{jobs['prep']}_1.out"))
        self.assertIn("00002.tar", log)
        self.assertIn("prep FAILED (exit 1)", log)
        failed = [r for r in manifest(d)["records"] if r["stage"] == "prep" and r["status"] == "failed"]
        self.assertEqual(len(failed), 1)
        self.assertEqual(failed[0]["part"]["index"], 1)
        self.assertIn("00002.tar", failed[0]["errors"][0])
        show = subprocess.run([MCM, "manifest", "show", d], capture_output=True, text=True).stdout
        self.assertIn("prep  failed", show)
        self.assertIn("error: rank 0: shard", show)


if __name__ == "__main__":
    unittest.main()
