"""PyAV clip loader for bench/prep_throughput: decode, take frames n < span with n % stride == 0,
center-crop to a square, resize (bicubic, libswscale via reformat) to RGB, one thread."""
import argparse
import glob
import json
import time

import av


def load(path, frames, stride, size):
    out = []
    with av.open(path) as c:
        st = c.streams.video[0]
        st.thread_type = "SLICE"
        st.codec_context.thread_count = 1
        for i, f in enumerate(c.decode(st)):
            if i % stride:
                continue
            side = min(f.width, f.height)
            arr = f.to_ndarray(format="rgb24")
            y0, x0 = (f.height - side) // 2, (f.width - side) // 2
            sq = av.VideoFrame.from_ndarray(arr[y0:y0 + side, x0:x0 + side].copy(), format="rgb24")
            out.append(sq.reformat(width=size, height=size, format="rgb24", interpolation="BICUBIC").to_ndarray())
            if len(out) == frames:
                break
    return out


def main():
    ap = argparse.ArgumentParser()
    for k in ("frames", "stride", "size", "reps"):
        ap.add_argument("--" + k, type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    paths = sorted(glob.glob(a.dir + "/*.mp4"))
    t0 = time.perf_counter()
    for _ in range(a.reps):
        for p in paths:
            assert len(load(p, a.frames, a.stride, a.size)) == a.frames
    json.dump({"seconds": time.perf_counter() - t0, "clips": len(paths) * a.reps}, open(a.out, "w"))


if __name__ == "__main__":
    main()
