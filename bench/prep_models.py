#!/usr/bin/env python3
"""Model folders for the whole-prep rows of bench/prep_throughput, saved by diffusers and
transformers themselves from random initialisation (nothing is downloaded):

  OUT/vae/           AutoencoderKL with Stable Diffusion's VAE configuration (block_out_channels
                     128, 256, 512, 512; 2 layers per block; 4 latent channels; scaling 0.18215)
  OUT/text_encoder/  a small CLIPTextModel (the real 49408-token vocabulary, 4 layers of 256)
  OUT/tokenizer/     CLIP's tokenizer, built from open_clip's bundled BPE merges

Usage: prep_models.py OUT   (kept if OUT/done.json says the same configuration)
"""
import json
import os
import sys

import torch
from diffusers import AutoencoderKL
from transformers import CLIPTextConfig, CLIPTextModel

# CLIP's tokenizer from open_clip's BPE merges, as the tests build it.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "models"))
from make_tiny_pipeline import tokenizer  # noqa: E402

VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32, sample_size=512,
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.18215)
TEXT = dict(vocab_size=49408, hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
            max_position_embeddings=77, hidden_act="quick_gelu", eos_token_id=49407, bos_token_id=49406,
            pad_token_id=49407)
VERSION = 1


def main():
    out = sys.argv[1]
    stamp = {"version": VERSION, "vae": VAE, "text": TEXT}
    done = os.path.join(out, "done.json")
    if os.path.exists(done) and json.load(open(done)) == json.loads(json.dumps(stamp)):
        return
    torch.manual_seed(0)
    AutoencoderKL(**VAE).save_pretrained(os.path.join(out, "vae"), safe_serialization=True)
    CLIPTextModel(CLIPTextConfig(**TEXT)).save_pretrained(os.path.join(out, "text_encoder"), safe_serialization=True)
    tok_dir = os.path.join(out, "tokenizer")
    tokenizer().save_pretrained(tok_dir)
    # transformers 5 writes tokenizer.json only; our loader also reads vocab.json + merges.txt.
    model = json.load(open(os.path.join(tok_dir, "tokenizer.json"), encoding="utf-8"))["model"]
    with open(os.path.join(tok_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(model["vocab"], f, ensure_ascii=False)
    with open(os.path.join(tok_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join((m if isinstance(m, str) else " ".join(m)) + "\n" for m in model["merges"]))
    json.dump(stamp, open(done, "w"))


if __name__ == "__main__":
    main()
