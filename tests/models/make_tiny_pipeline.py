#!/usr/bin/env python3
"""A tiny TextToVideoSDPipeline folder saved by diffusers itself (random weights), for tests.

Usage: make_tiny_pipeline.py OUT_DIR

OUT_DIR gets model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/ exactly as
`pipeline.save_pretrained` writes them. The tokenizer is CLIP's real vocabulary (open_clip's
bundled merges file, nothing is downloaded); the text encoder is tiny but embeds all 49408 ids.
Also writes OUT_DIR/reference.json: for a few captions, diffusers' own prompt embeddings
(pipeline.encode_prompt), to compare `mcm prep`'s stored text embeddings against.
"""
import gzip
import json
import os
import sys

import torch
from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel
from open_clip.tokenizer import SimpleTokenizer, default_bpe
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from make_model_golden import perturb  # this folder is on sys.path when run as a script

torch.set_num_threads(1)
CAPTIONS = ["a red circle moves left", "A small BLUE square, moving fast!", "héllo wörld — 日本 🎉"]


def tokenizer():
    oc = SimpleTokenizer(bpe_path=default_bpe())
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {rename.get(k, k): v for k, v in oc.encoder.items()}
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    return CLIPTokenizer(vocab=vocab, merges=[tuple(m.split()) for m in lines], model_max_length=77)


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    unet = perturb(UNet3DConditionModel(
        sample_size=8, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), block_out_channels=(32, 64), layers_per_block=1,
        norm_num_groups=8, cross_attention_dim=32, attention_head_dim=8), 1)
    vae = perturb(AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(32, 64), layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=32), 2)
    text = perturb(CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, eos_token_id=49407, bos_token_id=49406, pad_token_id=49407)), 3)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    pipe = TextToVideoSDPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer(), unet=unet, scheduler=sched)
    pipe.save_pretrained(out, safe_serialization=True)
    # transformers 5 writes tokenizer.json only; real SD/ModelScope folders carry vocab.json +
    # merges.txt as well, so write them too (from the same tokenizer.json).
    model = json.load(open(os.path.join(out, "tokenizer", "tokenizer.json"), encoding="utf-8"))["model"]
    with open(os.path.join(out, "tokenizer", "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(model["vocab"], f, ensure_ascii=False)
    with open(os.path.join(out, "tokenizer", "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in model["merges"]))
    ref = {}
    with torch.no_grad():
        for c in CAPTIONS:
            emb, _ = pipe.encode_prompt(c, "cpu", 1, False)
            ref[c] = emb[0].tolist()
    json.dump(ref, open(os.path.join(out, "reference.json"), "w"))


if __name__ == "__main__":
    main()
