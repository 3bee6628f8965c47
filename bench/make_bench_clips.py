#!/usr/bin/env python3
"""Realistic clips for bench/prep_throughput, made by the ffmpeg CLI (seeded, kept between runs):
WebVid-like H.264 mp4s of 10-30 s (triangular, mean 18 s) at 25, 29.97 or 30 fps, 596x336
(WebVid's common size) unless --size says otherwise, x264 with B-frames and either its default
GOP (keyint 250, scene cuts) or a 2 s key-frame interval; moving test pattern plus grain for a
bitrate near WebVid's (about 0.7 Mbps at 596x336). Also clips.tar, a WebDataset shard of the
first --tar-n of them (KEY.mp4 + KEY.json with a caption) for `mcm prep`.

Usage: make_bench_clips.py --out DIR [--n 12] [--tar-n 8] [--size 596x336] [--seed 0]
"""
import argparse
import io
import json
import os
import random
import subprocess
import tarfile

WORDS = "a red car drives along the coast at sunset while birds fly over calm blue water near old town".split()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--tar-n", type=int, default=8)
    ap.add_argument("--size", default="596x336")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)
    plan = []
    for i in range(a.n):
        seconds = round(rng.triangular(10, 30, 14), 2)
        fps = rng.choice(["25", "30000/1001", "30"])
        gop = "250" if i % 2 == 0 else str(2 * round(eval(fps)))
        caption = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14)))
        plan.append({"key": f"clip{i:03d}", "seconds": seconds, "fps": fps, "gop": gop, "caption": caption})
    stamp = {"version": 1, "size": a.size, "plan": plan}
    manifest = os.path.join(a.out, "clips.json")
    if not (os.path.exists(manifest) and json.load(open(manifest)) == stamp):
        for p in plan:
            src = f"testsrc2=s={a.size}:r={p['fps']},noise=alls=4:allf=t"
            cmd = ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", src, "-t", str(p["seconds"]),
                   "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-g", p["gop"],
                   "-y", os.path.join(a.out, p["key"] + ".mp4")]
            subprocess.run(cmd, check=True)
        json.dump(stamp, open(manifest, "w"), indent=1)
    with tarfile.open(os.path.join(a.out, "clips.tar"), "w") as tar:
        for p in plan[:a.tar_n]:
            tar.add(os.path.join(a.out, p["key"] + ".mp4"), arcname=p["key"] + ".mp4")
            meta = json.dumps({"caption": p["caption"]}).encode()
            info = tarfile.TarInfo(p["key"] + ".json")
            info.size = len(meta)
            tar.addfile(info, io.BytesIO(meta))

if __name__ == "__main__":
    main()
