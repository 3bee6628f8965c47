"""Writes the safetensors fuzz seed corpus with the reference `safetensors` package.

Run from the repository root with the project venv: .venv/bin/python fuzz/make_corpus.py
Small valid files, one per feature the reader handles (every dtype, empty and scalar tensors,
several tensors, metadata), and readable copies of past findings (regress-*.safetensors, which
the reference package refuses to write). The fuzzer's own crash inputs (regress-*.input) are
checked in as found and left untouched.
"""
import json
import pathlib
import struct

import torch
from safetensors.torch import save

OUT = pathlib.Path(__file__).resolve().parent / "corpus" / "safetensors"

SEEDS = {
    "f32": ({"w": torch.arange(6, dtype=torch.float32).view(2, 3)}, None),
    "f16": ({"h": torch.tensor([1.0, -2.0, 0.5], dtype=torch.float16)}, None),
    "bf16": ({"b": torch.tensor([[1.0, 0.5], [-3.0, 2.0]], dtype=torch.bfloat16)}, None),
    "i64": ({"i": torch.tensor([7, -1], dtype=torch.int64)}, None),
    "empty": ({"e": torch.zeros(0, 3, dtype=torch.float32)}, None),
    "scalar": ({"s": torch.tensor(2.5, dtype=torch.float64)}, None),
    "multi": ({
        "a.weight": torch.ones(2, 2, dtype=torch.float32),
        "a.bias": torch.zeros(2, dtype=torch.float16),
        "mask": torch.tensor([True, False, True]),
        "idx": torch.tensor([1, 2], dtype=torch.int32),
        "q": torch.tensor([-1, 1], dtype=torch.int8),
        "u": torch.tensor([255], dtype=torch.uint8),
        "s16": torch.tensor([3], dtype=torch.int16),
    }, None),
    "metadata": ({"x": torch.tensor([1.0], dtype=torch.float32)}, {"format": "pt", "note": "seed"}),
    "only_metadata": ({}, {"format": "pt"}),
}


# Findings of fuzz/safetensors_fuzz.cpp, fixed in src/io/safetensors.cpp (tests: FuzzRegressions).
REGRESSIONS = {
    # (2^61 + 1) * 8 bytes wrapped to 8 in uint64: accepted with an 8-byte data section.
    "regress-bytes-wrap": ({"a": {"dtype": "F64", "shape": [2**61 + 1], "data_offsets": [0, 8]}}, 8),
    # After a zero size any size passed; 2^64 - 1 became the int64 size -1.
    "regress-size-after-zero": ({"a": {"dtype": "F32", "shape": [0, 2**64 - 1], "data_offsets": [0, 0]}}, 0),
}


def image(header, data_bytes):
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + bytes(data_bytes)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (tensors, metadata) in SEEDS.items():
        (OUT / f"{name}.safetensors").write_bytes(save(tensors, metadata=metadata))
    for name, (header, data_bytes) in REGRESSIONS.items():
        (OUT / f"{name}.safetensors").write_bytes(image(header, data_bytes))
    print(f"wrote {len(SEEDS) + len(REGRESSIONS)} seeds to {OUT}")


if __name__ == "__main__":
    main()
