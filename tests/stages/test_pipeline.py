"""End-to-end tests of `mcm synth`, `mcm prep` and `mcm manifest` as users run them.

Real processes (singleton and `mpirun -np 2`), real files read back by h5py and ffprobe,
planted broken inputs, killed and re-run stages. Run by ctest (stages.pipeline)."""
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

import h5py
import numpy as np

SRC = os.environ.get("MCM_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BIN = os.environ.get("MCM_BINARY_DIR", os.path.join(SRC, "build"))
MCM = os.path.join(BIN, "mcm")
MPIEXEC = os.environ.get("MPIEXEC", "mpiexec")
TINY = os.path.join(SRC, "configs", "tiny.toml")
BENCH = os.path.join(os.path.dirname(TINY), "bench.toml")  # the synthetic benchmark's overlay on TINY
REAL = os.path.join(SRC, "tests", "data", "real", "video2dataset-sample.tar")
ALL_BROKEN = ["corrupt_mp4", "short_clip", "missing_caption", "bad_utf8_caption", "no_media",
              "zero_byte_jpg", "truncated_jpg", "truncated_tar"]
# Small but real: fewer samples than tiny.toml so the suite stays fast.
SMALL = ["synth.videos=16", "synth.images=8", "synth.image_shards=2", "prep.clips_per_video=1"]


def mcm(args, run_dir, sets=(), np_=1, check=True, timeout=600, overlays=()):
    cmd = [MCM] + args + ["--config", TINY]
    for o in overlays:
        cmd += ["--config", o]
    cmd += ["--set", f"run.dir={run_dir}"]
    for s in sets:
        cmd += ["--set", s]
    if np_ > 1:
        cmd = [MPIEXEC, "-n", str(np_), "--oversubscribe"] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def manifest(run_dir):
    """manifest.json with the output journals of open (running, killed) records folded in, as
    mcm reads it: see Note [manifest journals] in src/core/manifest.hpp. Journals first."""
    jdir = os.path.join(run_dir, "manifest.d")
    journals = {}
    for name in sorted(os.listdir(jdir)) if os.path.isdir(jdir) else []:
        m = re.fullmatch(r"(.+)\.rank(\d+)\.jsonl", name)
        if m:
            with open(os.path.join(jdir, name), "rb") as f:
                lines = f.read().split(b"\n")[:-1]  # the last piece is empty or a torn write
            journals.setdefault(m[1], []).append((int(m[2]), [json.loads(l)["entry"] for l in lines]))
    with open(os.path.join(run_dir, "manifest.json")) as f:
        doc = json.load(f)
    for r in doc["records"]:
        if r.get("journals") != "merged":
            for _, entries in sorted(journals.get(r["id"], []), key=lambda j: j[0]):
                r["outputs"] += entries
    return doc


def latest(run_dir, stage):
    return [r for r in manifest(run_dir)["records"] if r["stage"] == stage][-1]


def verify(run_dir):
    return subprocess.run([MCM, "manifest", "verify", run_dir], capture_output=True, text=True)


def clips(run_dir):
    """key -> (latents, text_emb, caption, frame indices) over all video shards."""
    out = {}
    prep = os.path.join(run_dir, "prep")
    for name in sorted(os.listdir(prep)):
        if not (name.startswith("video-") and name.endswith(".h5")):
            continue
        with h5py.File(os.path.join(prep, name), "r") as f:
            keys = f["key"].asstr()[:]
            for i, k in enumerate(keys):
                out[k] = (f["latents"][i], f["text_emb"][i], f["caption"].asstr()[i], f["frame_indices"][i])
    return out


class Pipeline(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="mcm-e2e-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_dir(self, name):
        d = os.path.join(self.tmp, name)
        shutil.rmtree(d, ignore_errors=True)
        return d

    def test_two_ranks_equal_one_rank(self):
        one, two = self.run_dir("one"), self.run_dir("two")
        mcm(["synth"], one, SMALL)
        mcm(["synth"], two, SMALL, np_=2)
        # Same samples, captions and ground truth from any world size (per-key seeds). The mp4
        # bytes may differ by x264's rounding between processes, so media are not compared here.
        for sub in ("videos", "images"):
            for name in sorted(os.listdir(os.path.join(one, "data", sub))):
                with tarfile.open(os.path.join(one, "data", sub, name)) as a, tarfile.open(os.path.join(two, "data", sub, name)) as b:
                    self.assertEqual(a.getnames(), b.getnames())
                    for m in a.getnames():
                        if m.endswith((".txt", ".json")):
                            self.assertEqual(a.extractfile(m).read(), b.extractfile(m).read(), m)
        # prep: the same input shards (one's) on 1 and 2 ranks give exactly the same clips.
        same_input = [f"prep.videos={one}/data/videos", f"prep.images={one}/data/images",
                      f"models.text_encoder.vocab=\"{one}/data/vocab.txt\""]
        mcm(["prep"], one, SMALL)
        mcm(["prep"], two, SMALL + same_input, np_=2)
        a, b = clips(one), clips(two)
        self.assertEqual(len(a), 16)
        for name in sorted(os.listdir(os.path.join(one, "prep"))):
            if name.endswith(".h5"):  # byte-identical shards, whatever the world size
                with open(os.path.join(one, "prep", name), "rb") as x, open(os.path.join(two, "prep", name), "rb") as y:
                    self.assertEqual(x.read(), y.read(), name)
        self.assertEqual(sorted(a), sorted(b))
        for k in a:
            for x, y in zip(a[k], b[k]):
                np.testing.assert_array_equal(x, y, err_msg=k)
        self.assertEqual(latest(two, "prep")["world_size"], 2)
        self.assertEqual(verify(one).returncode, 0)
        self.assertEqual(verify(two).returncode, 0, verify(two).stderr)

    def test_shards_as_h5py_and_ffprobe_see_them(self):
        d = self.run_dir("formats")
        mcm(["synth"], d, SMALL)
        mcm(["prep"], d, SMALL)
        with h5py.File(os.path.join(d, "prep", "video-00000.h5"), "r") as f:
            self.assertEqual(f["latents"].dtype, np.float16)
            self.assertEqual(f["latents"].shape[1:], (12, 8, 8, 8))  # C = 3*2*2, T = 8, 16/2
            self.assertEqual(f["latents"].chunks, (1, 12, 8, 8, 8))   # one chunk per clip
            self.assertEqual(f["text_emb"].shape[1:], (16, 64))
            self.assertEqual(f.attrs["frame_stride"], 2)
            self.assertEqual(f.attrs["num_frames"], 8)
            self.assertIn("moves", f["caption"].asstr()[0])
            lat = f["latents"][0].astype(np.float32)
            # pixel-shuffle latents are pixels in [-1, 1]
            self.assertGreaterEqual(lat.min(), -1.001)
            self.assertLessEqual(lat.max(), 1.001)
        with h5py.File(os.path.join(d, "prep", "image-00000.h5"), "r") as f:
            self.assertEqual(f["latents"].shape[1:], (12, 8, 8))
        with tarfile.open(os.path.join(d, "data", "videos", "00000.tar")) as t:
            names = t.getnames()
            self.assertEqual(names[:3], ["000000000.mp4", "000000000.txt", "000000000.json"])
            meta = json.loads(t.extractfile("000000000.json").read())
            for k in ("caption", "shape", "colour", "direction", "speed", "watermark"):
                self.assertIn(k, meta)
            mp4 = os.path.join(d, "probe.mp4")
            with open(mp4, "wb") as f:
                f.write(t.extractfile("000000000.mp4").read())
        p = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                            "stream=codec_name,width,height,nb_read_frames,pix_fmt", "-of", "json", mp4],
                           capture_output=True, text=True, check=True)
        st = json.loads(p.stdout)["streams"][0]
        self.assertEqual((st["codec_name"], st["width"], st["height"], st["pix_fmt"]), ("h264", 64, 64, "yuv420p"))
        self.assertEqual(int(st["nb_read_frames"]), 24)
        with tarfile.open(os.path.join(d, "data", "images", "00000.tar")) as t:
            self.assertTrue(t.getnames()[0].endswith(".jpg"))

    def test_planted_broken_samples_are_skipped_and_counted(self):
        d = self.run_dir("broken")
        sets = ["synth.broken=" + json.dumps(ALL_BROKEN), "synth.videos=48", "synth.images=32", "prep.clips_per_video=1"]
        mcm(["synth"], d, sets)
        p = mcm(["prep"], d, sets, np_=2)
        rec = latest(d, "prep")
        self.assertEqual(rec["status"], "complete")
        self.assertEqual(rec["counts"]["skipped"], {
            "bad_caption_utf8": 1, "corrupt_image": 2, "corrupt_video": 1, "missing_caption": 1,
            "no_media": 1, "too_short": 1, "truncated_tar": 1})
        self.assertEqual(rec["counts"]["clips_written"], 48 - 6)
        self.assertEqual(rec["counts"]["images_written"], 32 - 2)
        # Messages name the file, the key and the rank.
        self.assertRegex(p.stderr, r"skip \(bad_caption_utf8, rank \d\): 00000\.tar:000000001: caption is not valid UTF-8")
        self.assertRegex(p.stderr, r"truncated tar .*00003\.tar.*member \"000030011\.json\"")
        self.assertEqual(verify(d).returncode, 0)
        # Every skipped sample is a line of its shard's skip log, which the manifest points to.
        lines = []
        for o in rec["outputs"]:
            if o["path"].endswith(".h5"):
                self.assertTrue(o["skip_log"].endswith(".skipped.jsonl"))
                with open(os.path.join(d, o["skip_log"])) as f:
                    lines += [json.loads(l) for l in f]
        self.assertEqual(len(lines), 8)
        by_reason = {}
        for l in lines:
            self.assertEqual(set(l), {"shard", "key", "reason", "detail"})
            by_reason.setdefault(l["reason"], []).append(l)
        self.assertEqual(by_reason["bad_caption_utf8"][0]["key"], "000000001")
        self.assertTrue(by_reason["bad_caption_utf8"][0]["shard"].endswith("00000.tar"))
        self.assertIn("000030011", by_reason["truncated_tar"][0]["detail"])

    def test_rerun_skips_complete_and_redoes_changed(self):
        d = self.run_dir("rerun")
        mcm(["synth"], d, SMALL)
        mcm(["prep"], d, SMALL)
        first = {o["path"]: o["checksum"] for o in latest(d, "prep")["outputs"]}
        p = mcm(["prep"], d, SMALL)
        rec = latest(d, "prep")
        self.assertTrue(all("reused_from" in o for o in rec["outputs"]), rec["outputs"])
        self.assertEqual(rec["counts"]["clips_written"], 16)
        # Damage one output: only that shard is redone.
        with open(os.path.join(d, "prep", "video-00001.h5"), "r+b") as f:
            f.seek(3000)
            chunk = f.read(64)
            f.seek(3000)
            f.write(bytes(b ^ 0xFF for b in chunk))
        self.assertEqual(verify(d).returncode, 1)
        mcm(["prep"], d, SMALL)
        rec = latest(d, "prep")
        redone = [o["path"] for o in rec["outputs"] if "reused_from" not in o]
        self.assertEqual(redone, ["prep/video-00001.skipped.jsonl", "prep/video-00001.h5"])
        self.assertEqual({o["path"]: o["checksum"] for o in rec["outputs"]}, first)  # deterministic
        self.assertEqual(verify(d).returncode, 0)
        # A config change that alters prep's output redoes everything.
        mcm(["prep"], d, SMALL + ["prep.stride=1"])
        self.assertFalse(any("reused_from" in o for o in latest(d, "prep")["outputs"]))

    def test_killed_prep_loses_nothing_and_resumes(self):
        d = self.run_dir("killed")
        sets = ["synth.videos=96", "synth.video_shards=8", "synth.images=0", "prep.encode_images=false",
                "prep.clips_per_video=1"]
        mcm(["synth"], d, sets)
        # Die by SIGKILL right after the 3rd committed shard (fault injection in StageRun; each
        # shard records its skip log, then itself: 6 outputs).
        cmd = [MCM, "prep", "--config", TINY, "--set", f"run.dir={d}"] + sum([["--set", s] for s in sets], [])
        p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, MCM_FAULT_KILL_AFTER_OUTPUTS="6"))
        self.assertEqual(p.returncode, -signal.SIGKILL)
        rec = latest(d, "prep")
        recorded = {o["path"] for o in rec["outputs"]}
        # Every final .h5 on disk is a recorded, verified output; partial work is only *.tmp.
        for name in os.listdir(os.path.join(d, "prep")):
            if name.endswith(".h5"):
                self.assertIn(f"prep/{name}", recorded)
        self.assertEqual(verify(d).returncode, 1)  # the killed record is still "running"
        mcm(["prep"], d, sets)
        rec = latest(d, "prep")
        self.assertEqual(rec["status"], "complete")
        self.assertEqual(rec["counts"]["clips_written"], 96)
        self.assertEqual(len(recorded), 6)
        self.assertEqual(sum("reused_from" in o for o in rec["outputs"]), 6)
        self.assertEqual(verify(d).returncode, 0)

    def test_unreadable_shard_fails_the_stage_but_keeps_the_rest(self):
        d = self.run_dir("unreadable")
        mcm(["synth"], d, SMALL)
        with open(os.path.join(d, "data", "videos", "00009.tar"), "wb") as f:
            f.write(b"this is not a tar file" * 100)
        p = mcm(["prep"], d, SMALL, np_=2, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("00009.tar", p.stderr)
        self.assertIn("not a tar archive", p.stderr)
        rec = latest(d, "prep")
        self.assertEqual(rec["status"], "failed")
        self.assertTrue(any("00009.tar" in e for e in rec["errors"]))
        # 4 video + 2 image shards finished and recorded, each with its skip log
        self.assertEqual(len([o for o in rec["outputs"] if o["path"].endswith(".h5")]), 6)
        self.assertEqual(len(rec["outputs"]), 12)
        os.remove(os.path.join(d, "data", "videos", "00009.tar"))
        mcm(["prep"], d, SMALL)
        self.assertEqual(latest(d, "prep")["status"], "complete")
        self.assertEqual(verify(d).returncode, 0)

    def test_outputs_named_after_inputs_and_independent_of_workers(self):
        d, e = self.run_dir("names"), self.run_dir("names-workers")
        mcm(["synth"], d, SMALL)
        vids = os.path.join(d, "data", "videos")
        os.rename(os.path.join(vids, "00001.tar"), os.path.join(vids, "webvid-b.tar"))
        mcm(["prep"], d, SMALL + ["prep.decode_workers=1", "prep.batch_clips=3"])
        names = sorted(n for n in os.listdir(os.path.join(d, "prep")) if n.startswith("video-") and n.endswith(".h5"))
        self.assertEqual(names, ["video-00000.h5", "video-00002.h5", "video-00003.h5", "video-webvid-b.h5"])
        # Removing an input shard keeps every other output valid: all are reused.
        os.remove(os.path.join(vids, "00000.tar"))
        mcm(["prep"], d, SMALL + ["prep.decode_workers=1", "prep.batch_clips=3"])
        self.assertTrue(all("reused_from" in o for o in latest(d, "prep")["outputs"]))
        # Any number of decode workers writes the same bytes.
        mcm(["prep"], e, SMALL + ["prep.decode_workers=4", "prep.batch_clips=3", f"prep.videos={vids}",
                                  f"prep.images={d}/data/images", f"models.text_encoder.vocab=\"{d}/data/vocab.txt\""])
        for name in names[1:]:
            with open(os.path.join(d, "prep", name), "rb") as x, open(os.path.join(e, "prep", name), "rb") as y:
                self.assertEqual(x.read(), y.read(), name)

    def test_clips_per_video_stores_k_windows(self):
        d = self.run_dir("windows")
        mcm(["synth"], d, SMALL)
        mcm(["prep"], d, SMALL + ["prep.clips_per_video=3", "prep.crop=\"random_resized\"", "prep.stride=1"])
        rec = latest(d, "prep")
        self.assertEqual(rec["counts"]["clips_written"], 48)
        self.assertEqual(rec["counts"]["videos_written"], 16)
        with h5py.File(os.path.join(d, "prep", "video-00000.h5"), "r") as f:
            self.assertEqual(f.attrs["clips_per_video"], 3)
            keys = f["key"].asstr()[:]
            self.assertEqual(list(keys[:3]), [keys[0]] * 3)  # a video's windows are consecutive rows
            starts = {int(f["frame_indices"][i][0]) for i in range(len(keys))}
            self.assertGreater(len(starts), 3)  # random starts in [0, 24 - 8*1]
            self.assertLessEqual(max(starts), 24 - 8)

    def test_unsafe_keys_and_accepted_failed_shards(self):
        d = self.run_dir("hostile")
        mcm(["synth"], d, SMALL)
        vids = os.path.join(d, "data", "videos")
        with tarfile.open(os.path.join(vids, "00000.tar")) as t:
            mp4 = t.extractfile("000000000.mp4").read()
        with tarfile.open(os.path.join(vids, "00004.tar"), "w", format=tarfile.PAX_FORMAT) as t:
            for key in ("../escape", "ok\x01ctrl", "fine"):
                for ext, data in (("mp4", mp4), ("txt", b"a red circle moves left")):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
        with open(os.path.join(vids, "00005.tar"), "wb") as f:
            f.write(b"not a tar" * 100)
        p = mcm(["prep"], d, SMALL + ["prep.max_failed_shards=1"], np_=2)
        rec = latest(d, "prep")
        self.assertEqual(rec["status"], "complete")
        self.assertEqual(len(rec["failed_shards"]), 1)
        self.assertIn("00005.tar", rec["failed_shards"][0])
        self.assertIn("accepted by prep.max_failed_shards = 1", p.stderr)
        self.assertEqual(rec["counts"]["skipped"].get("unsafe_path"), 2)
        with open(os.path.join(d, "prep", "video-00004.skipped.jsonl")) as f:
            lines = [json.loads(l) for l in f]
        self.assertEqual([l["key"] for l in lines], ["../escape", "ok\x01ctrl"])
        self.assertIn("fine", clips(d))
        # One more unreadable shard than accepted fails the stage.
        with open(os.path.join(vids, "00006.tar"), "wb") as f:
            f.write(b"not a tar either" * 100)
        p = mcm(["prep"], d, SMALL + ["prep.max_failed_shards=1"], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(latest(d, "prep")["status"], "failed")

    def test_real_video2dataset_shard(self):
        d = self.run_dir("real")
        mcm(["synth"], d, SMALL)  # for the text encoder's vocabulary
        sets = [f"prep.videos={REAL}", "prep.frames=16", "prep.stride=8", "prep.resolution=64",
                "prep.encode_images=false", "prep.crop=\"random_resized\"", "prep.clips_per_video=1"]
        p = mcm(["prep"], d, sets)
        rec = latest(d, "prep")
        self.assertEqual(rec["counts"]["clips_written"], 3)
        self.assertEqual(rec["counts"]["skipped"], {"too_short": 3})
        self.assertIn("1 frames, the window needs 128", p.stderr)
        got = clips(d)
        self.assertEqual(sorted(got), ["0000008_00001", "0000030_00005", "0000038_00003"])
        # No "caption" in this sample's .json, so the .txt caption is used (trailing space trimmed).
        self.assertEqual(got["0000008_00001"][2], "a man in a suit and orange tie standing at a podium .")
        self.assertEqual(len(got["0000030_00005"][3]), 16)
        self.assertTrue(all(np.diff(v[3]).tolist() == [8] * 15 for v in got.values()))
        self.assertEqual(rec["inputs"][0]["path"], os.path.realpath(REAL))

    def test_prep_with_diffusers_vae_and_clip_on_real_shard(self):
        # A tiny TextToVideoSDPipeline folder saved by diffusers; prep uses its vae/ and
        # text_encoder/ + tokenizer/ on the real video2dataset shard.
        d = self.run_dir("zoo")
        pipe = os.path.join(self.tmp, "tiny-pipeline")
        if not os.path.isdir(pipe):
            subprocess.run([sys.executable, os.path.join(SRC, "tests", "models", "make_tiny_pipeline.py"), pipe],
                           check=True, capture_output=True)
        sets = [f"prep.videos={REAL}", "prep.frames=8", "prep.stride=2", "prep.resolution=32",
                "prep.encode_images=false", "prep.clips_per_video=1", "models.autoencoder.kind=\"autoencoder_kl\"",
                f"models.autoencoder.path=\"{pipe}/vae\"", "models.text_encoder.kind=\"clip\"",
                f"models.text_encoder.path=\"{pipe}/text_encoder/\""]  # trailing slash on purpose
        mcm(["prep"], d, sets)
        rec = latest(d, "prep")
        self.assertGreaterEqual(rec["counts"]["clips_written"], 3)
        got = clips(d)
        lat, emb, caption, _ = got["0000008_00001"]
        self.assertEqual(lat.shape, (4, 8, 16, 16))  # 2 down-sampling levels in the tiny VAE: 32 -> 16
        self.assertEqual(emb.shape, (77, 32))
        # The stored text embedding is diffusers' own prompt embedding of the caption (fp16).
        import torch
        from diffusers import TextToVideoSDPipeline
        p = TextToVideoSDPipeline.from_pretrained(pipe)
        with torch.no_grad():
            ref, _ = p.encode_prompt(caption, "cpu", 1, False)
        np.testing.assert_allclose(emb.astype(np.float32), ref[0].numpy(), atol=2e-3)
        self.assertEqual(verify(d).returncode, 0, verify(d).stderr)
        # Re-running with the same models reuses every shard (models enter the stage hash by content).
        mcm(["prep"], d, sets)
        self.assertTrue(all("reused_from" in o for o in latest(d, "prep")["outputs"]))

    def test_prep_parts_cover_every_shard_once(self):
        # `mcm prep --part I/N`, one Slurm array task each (slurm/prep.sbatch): N contiguous ranges of
        # the shard list, the same files as one prep, and the stage complete only with every part.
        d = self.run_dir("parts")
        mcm(["synth"], d, SMALL)
        whole = self.run_dir("parts_whole")  # one prep of the same shards
        mcm(["prep"], whole, SMALL + [f"prep.videos={d}/data/videos", f"prep.images={d}/data/images",
                                      f"models.text_encoder.vocab=\"{d}/data/vocab.txt\""])

        def plan():
            p = subprocess.run([MCM, "slurm", "plan", "--config", TINY, "--set", f"run.dir={d}"] +
                               sum([["--set", s] for s in SMALL], []), capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stderr)
            return dict(re.findall(r"^MCM_STATE_(\w+)=(\w+)$", p.stdout, re.M))

        mcm(["prep", "--part", "2/3"], d, SMALL)
        mcm(["prep", "--part", "0/3"], d, SMALL)
        self.assertEqual(plan()["prep"], "submit")  # part 1 is missing
        mcm(["prep", "--part", "1/3"], d, SMALL)
        self.assertEqual((plan()["synth"], plan()["prep"], plan()["teacher"]), ("complete", "complete", "submit"))
        recs = [r for r in manifest(d)["records"] if r["stage"] == "prep"]
        self.assertEqual([r["part"]["index"] for r in recs], [2, 0, 1])
        ranges = sorted((r["part"]["first_shard"], r["part"]["end_shard"]) for r in recs)
        self.assertEqual(ranges, [(0, 2), (2, 4), (4, 6)])  # 4 video + 2 image shards
        for name in sorted(os.listdir(os.path.join(whole, "prep"))):
            if name.endswith(".h5"):
                with open(os.path.join(whole, "prep", name), "rb") as a, open(os.path.join(d, "prep", name), "rb") as b:
                    self.assertEqual(a.read(), b.read(), name)
        self.assertEqual(verify(d).returncode, 0, verify(d).stdout)
        for args, why in ((["prep", "--part", "3/3"], "0 <= I < N"), (["prep", "--part", "1"], "expected I/N"),
                          (["teacher", "--part", "0/2"], "does not split")):
            p = mcm(args, d, SMALL, check=False)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(why, p.stderr)

    def assert_peak_gib(self, out, precision, low, high):
        m = re.search(r"memory per GPU: ([0-9.]+) GiB at the peak of a step in " + precision, out)
        self.assertIsNotNone(m, out)
        self.assertTrue(low < float(m.group(1)) < high, m.group(0))

    def test_paper_configs_plan_the_papers_jobs(self):
        # configs/modelscope.toml, the README's cluster example, loads and validates, and its jobs are
        # sized as documented: 4 nodes x 8 GPUs for the training stages, with requeue before the limit.
        p = subprocess.run([MCM, "slurm", "plan", "--config", os.path.join(SRC, "configs", "modelscope.toml")],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"MCM_SBATCH_distill=\('--partition=gpu' '--cpus-per-task=8' '--nodes=4' "
                                   r"'--ntasks-per-node=8' '--gpus-per-node=8' '--time=2-00:00:00' '--requeue' "
                                   r"'--signal=B:USR1@600'\)")
        self.assertIn("MCM_PLAN=('prep' 'teacher' 'distill' 'baseline' 'sample' 'eval' 'report')", p.stdout)
        # configs/animatediff.toml loads and validates too: the UNetMotionModel teacher from SD1.5 + adapter.
        ad = os.path.join(SRC, "configs", "animatediff.toml")
        p = subprocess.run([MCM, "slurm", "plan", "--config", ad], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = subprocess.run([MCM, "distill", "--config", ad, "--dry-run"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("kind = 'unet_motion'", p.stdout)
        self.assertIn("resolution = 512", p.stdout)
        # The dry run resolves the paper-scale models without weights (built on the meta device) and
        # checks the batch split over the [slurm] allocation.
        self.assertIn("UNetMotionModel from", p.stdout)
        self.assertIn("Stable Diffusion 1.5 + motion adapter v1-5-2 as published", p.stdout)
        self.assertIn("parameters: 1312730244", p.stdout)  # diffusers' count for SD1.5 + v1-5-2
        self.assertRegex(p.stdout, r"LoRA rank 64 on 530 layers \(252 in motion modules\)")
        self.assertIn("global 128 = 4 node(s) x 8 rank(s) ([slurm]) x micro-batch 1 x 4 accumulation step(s)", p.stdout)
        self.assertIn("DINOv2 from dinov2-base as published, 86580480 parameters", p.stdout)  # transformers' count
        # Memory per GPU, activations measured (Note [activation estimate]): one clip of 512^2 x 16 frames.
        self.assertIn("activations of the student's forward and backward, micro-batch 1 x 16 frames of 64^2 latents",
                      p.stdout)
        self.assertIn("the discriminator's generator pass (2 frames, dinov2 backbone)", p.stdout)
        self.assert_peak_gib(p.stdout, "fp16", 45, 80)
        # An SD1.5 unet/ whose motion adapter folder has no config.json: named, not guessed.
        unet = self.run_dir("sd15_unet")
        os.makedirs(unet, exist_ok=True)
        with open(os.path.join(unet, "config.json"), "w") as f:
            json.dump({"_class_name": "UNet2DConditionModel"}, f)
        p = subprocess.run([MCM, "distill", "--config", ad, "--dry-run", "--set", f"models.teacher.path=\"{unet}\"",
                            "--set", f"models.teacher.motion_adapter=\"{unet}/absent\""], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("models.teacher.motion_adapter", p.stderr)
        self.assertIn("no config.json", p.stderr)
        ms = os.path.join(SRC, "configs", "modelscope.toml")
        p = subprocess.run([MCM, "distill", "--config", ms, "--dry-run"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("parameters: 1411233860", p.stdout)  # ModelScopeT2V's UNet3DConditionModel
        self.assertIn("micro-batch 4 x 1 accumulation step(s)", p.stdout)
        # MCM trained ModelScope at 4 clips per GPU on 80 GB GPUs: the estimate must fit there.
        self.assertIn("micro-batch 4 x 16 frames of 32^2 latents", p.stdout)
        self.assert_peak_gib(p.stdout, "fp16", 60, 80)
        # The same step at bench/modelscope_size.toml's shapes allocated 64.7 GiB at its peak on an H200
        # (bench/gpu_steps.sh, README "Benchmarks"); the estimate must land within 5% of that.
        p = subprocess.run([MCM, "distill", "--config", os.path.join(SRC, "bench", "modelscope_size.toml"), "--dry-run",
                            "--set", "slurm.nodes=1", "--set", "slurm.gpus_per_node=1"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assert_peak_gib(p.stdout, "bf16", 64.7 * 0.95, 64.7 * 1.05)
        p = subprocess.run([MCM, "distill", "--config", ms, "--dry-run", "--set", "slurm.nodes=3"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("distill.batch = 128 is not a multiple of 3 node(s) x 8 rank(s)", p.stderr)
        p = subprocess.run([MCM, "slurm", "plan", "--config", TINY, "--set", 'slurm.train_time="5"'],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("slurm.signal_lead = 300 s leaves no time", p.stderr)
        p = subprocess.run([MCM, "slurm", "plan", "--config", TINY, "--set", 'slurm.time="4h"'],
                           capture_output=True, text=True)
        self.assertIn('slurm.time = "4h": expected a Slurm time limit', p.stderr)

    def test_bad_config_and_dry_run(self):
        d = self.run_dir("config")
        p = subprocess.run([MCM, "prep", "--config", TINY, "--set", "prep.frame=3"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn('did you mean "prep.frames"', p.stderr)
        p = subprocess.run([MCM, "prep", "--config", TINY, "--set", "prep.frames=9", "--dry-run"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("frames = 9", p.stdout)
        p = subprocess.run([MCM, "prep", "--config", TINY, "--set", f"run.dir={d}"], capture_output=True, text=True)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("videos", p.stderr)  # no shards yet: names the missing input
        p = subprocess.run([MCM, "manifest", "verify", d], capture_output=True, text=True)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("manifest.json", p.stderr)

    def test_manifest_show_traces_lineage(self):
        d = self.run_dir("show")
        mcm(["synth"], d, SMALL)
        mcm(["prep"], d, SMALL)
        p = subprocess.run([MCM, "manifest", "show", d, "prep/video-00000.h5"], capture_output=True, text=True, check=True)
        self.assertIn("data/videos/00000.tar", p.stdout)
        self.assertIn("synth  complete", p.stdout)
        rec = latest(d, "prep")
        for k in ("config", "config_hash", "versions", "code_revision", "hosts", "seeds", "started", "ended"):
            self.assertIn(k, rec)
        self.assertIn("HDF5", rec["versions"]["hdf5"])
        self.assertIn("FFmpeg", rec["versions"]["ffmpeg"])


if __name__ == "__main__":
    unittest.main()
