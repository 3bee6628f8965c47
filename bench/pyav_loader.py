#!/usr/bin/env python3
"""PyAV side of bench/prep_throughput: the same windows as ours, reached the way a careful
Python loader would: seek to the key frame before the window (container.seek, backward), decode
forward, name frames by round((pts - start_time) * fps), and for the wanted ones crop the centre
square on the YUV planes and let swscale (VideoFrame.reformat, bicubic) scale and convert to RGB,
which is what our decoder does. One decoder thread; each clip timed on its own.

Usage: pyav_loader.py --windows W.json --frames 16 --stride 8 --size 256 --out OUT.json
W.json: [{"path": "...", "start": 123}, ...]; OUT.json: per-clip seconds, indices, frames decoded.
"""
import argparse
import json
import time

import av
import numpy as np


def center_square_yuv420(frame):
    """The centre square of a yuv420p frame as a new frame (offsets on the chroma grid)."""
    w, h = frame.width, frame.height
    side = min(w, h)
    x0, y0 = ((w - side) // 2) & ~1, ((h - side) // 2) & ~1
    planes = frame.to_ndarray()  # (h * 3 / 2, w): Y, then U and V as h/4 rows of w each
    y = planes[:h].reshape(h, w)[y0:y0 + side, x0:x0 + side]
    u = planes[h:h + h // 4].reshape(h // 2, w // 2)[y0 // 2:(y0 + side) // 2, x0 // 2:(x0 + side) // 2]
    v = planes[h + h // 4:].reshape(h // 2, w // 2)[y0 // 2:(y0 + side) // 2, x0 // 2:(x0 + side) // 2]
    packed = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(side * 3 // 2, side)
    return av.VideoFrame.from_ndarray(packed, format="yuv420p")


def decode_window(source, start, frames, stride, size, threads=1):
    """Frames start, start + stride, ... as [frames, size, size, 3] uint8; also their indices and
    how many frames the decoder produced."""
    last = start + (frames - 1) * stride
    out = [None] * frames
    got = decoded = 0
    with av.open(source) as c:
        st = c.streams.video[0]
        st.codec_context.thread_count = threads
        fps, tb = st.average_rate, st.time_base
        t0 = st.start_time or 0
        c.seek(t0 + int(round(start / (fps * tb))), backward=True, any_frame=False, stream=st)
        for f in c.decode(st):
            decoded += 1
            i = round((f.pts - t0) * tb * fps)
            if i > last:
                break
            if i < start or (i - start) % stride:
                continue
            if f.format.name != "yuv420p":
                f = f.reformat(format="yuv420p")
            sq = center_square_yuv420(f)
            out[(i - start) // stride] = sq.reformat(width=size, height=size, format="rgb24",
                                                     interpolation="BICUBIC").to_ndarray()
            got += 1
            if got == frames:
                break
    if got < frames:
        raise RuntimeError(f"{source}: window at {start} incomplete ({got} of {frames} frames)")
    return np.stack(out), [start + k * stride for k in range(frames)], decoded


def main():
    ap = argparse.ArgumentParser()
    for k in ("frames", "stride", "size"):
        ap.add_argument("--" + k, type=int, required=True)
    ap.add_argument("--windows", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    windows = json.load(open(a.windows))
    seconds, indices, decoded = [], [], []
    for w in windows:
        t = time.perf_counter()
        _, idx, n = decode_window(w["path"], w["start"], a.frames, a.stride, a.size)
        seconds.append(time.perf_counter() - t)
        indices.append(idx)
        decoded.append(n)
    json.dump({"seconds": seconds, "indices": indices, "decoded_frames": decoded, "pyav": av.__version__,
               "ffmpeg": av.library_versions.get("libavcodec")}, open(a.out, "w"))


if __name__ == "__main__":
    main()
