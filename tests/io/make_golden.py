#!/usr/bin/env python3
"""A safetensors file written by the reference `safetensors` package, for tests/io.

Usage: make_golden.py OUT_DIR

Writes OUT_DIR/reference.safetensors: f [2, 3] float32 0..5, h [2] float16 (1, -2),
bf [2] bfloat16 (1, 0.5), i [1] int64 (7), and metadata {"format": "pt"}.
"""
import os
import sys

import torch
from safetensors.torch import save_file


def main():
    save_file({"f": torch.arange(6, dtype=torch.float32).view(2, 3),
               "h": torch.tensor([1.0, -2.0], dtype=torch.float16),
               "bf": torch.tensor([1.0, 0.5], dtype=torch.bfloat16),
               "i": torch.tensor([7], dtype=torch.int64)},
              os.path.join(sys.argv[1], "reference.safetensors"), metadata={"format": "pt"})


if __name__ == "__main__":
    main()
