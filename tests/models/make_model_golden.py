#!/usr/bin/env python3
"""Golden tensors for our UNet3DConditionModel and AutoencoderKL, made with diffusers itself.

Usage: make_model_golden.py OUT_DIR

Writes, for tiny random configurations (every parameter perturbed so that zero-initialised
layers, such as the last temporal conv, are exercised):
  OUT_DIR/unet_a/, unet_b/    diffusers folders (config.json + diffusion_pytorch_model.safetensors)
  OUT_DIR/vae/                 an AutoencoderKL folder
  OUT_DIR/clip_a/, clip_b/     transformers CLIPTextModel folders (clip_b with legacy "text_model." keys)
  OUT_DIR/golden.safetensors   inputs, outputs and a few gradients, keyed "<model>/<case>/<name>"
and, written by diffusers'/transformers' own save_pretrained for the loader tests:
  OUT_DIR/unet_a_sharded/      max_shard_size: diffusion_pytorch_model-0000K-of-0000N + index.json
  OUT_DIR/unet_a_fp16/         variant="fp16" in float16: diffusion_pytorch_model.fp16.safetensors
  OUT_DIR/unet_a_fp16_sharded/ both: ...fp16-0000K-of-0000N.safetensors + ...safetensors.index.fp16.json
  OUT_DIR/clip_a_sharded/      model-0000K-of-0000N.safetensors + model.safetensors.index.json
"""
import json
import os
import sys

import torch
from diffusers import AutoencoderKL, UNet3DConditionModel
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def perturb(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


UNETS = {
    # two levels, cross-attention down then plain, odd frame count
    "unet_a": dict(
        sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
        cross_attention_dim=16, attention_head_dim=8,
    ),
    # three levels, two layers per block, LCM-style w-conditioning, mid-block scale
    "unet_b": dict(
        sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(16, 32, 32), layers_per_block=2, norm_num_groups=8,
        cross_attention_dim=24, attention_head_dim=8, time_cond_proj_dim=6, mid_block_scale_factor=1.5,
    ),
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    tensors = {}
    cases = []
    g = torch.Generator().manual_seed(1234)

    for name, cfg in UNETS.items():
        unet = perturb(UNet3DConditionModel(**cfg), seed=len(name) + 7 * ord(name[-1]))
        unet.save_pretrained(os.path.join(out, name), safe_serialization=True)
        shapes = {"even": (2, 4, 3, 8, 8), "odd": (1, 4, 2, 5, 7)}
        for case, shape in shapes.items():
            x = torch.randn(shape, generator=g)
            t = torch.tensor([10, 999][: shape[0]], dtype=torch.int64)
            ctx = torch.randn(shape[0], 5, cfg["cross_attention_dim"], generator=g)
            cond = torch.randn(shape[0], cfg["time_cond_proj_dim"], generator=g) if "time_cond_proj_dim" in cfg else None
            unet.train(False)
            unet.zero_grad()
            y = unet(x, t, encoder_hidden_states=ctx, timestep_cond=cond).sample
            loss = (y * y).mean()
            loss.backward()
            key = f"{name}/{case}"
            tensors[f"{key}/x"] = x
            tensors[f"{key}/t"] = t
            tensors[f"{key}/ctx"] = ctx
            if cond is not None:
                tensors[f"{key}/cond"] = cond
            tensors[f"{key}/y"] = y.detach()
            for p in ("conv_in.weight", "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
                      "down_blocks.0.temp_convs.0.conv4.3.weight", "transformer_in.proj_in.weight"):
                tensors[f"{key}/grad/{p}"] = dict(unet.named_parameters())[p].grad.detach().clone()
            cases.append(key)

    # The layouts diffusers writes for big checkpoints and for variant="fp16" downloads.
    unet_a = UNet3DConditionModel.from_pretrained(os.path.join(out, "unet_a"))
    unet_a.save_pretrained(os.path.join(out, "unet_a_sharded"), safe_serialization=True, max_shard_size="1MB")
    unet_a = unet_a.to(torch.float16)
    unet_a.save_pretrained(os.path.join(out, "unet_a_fp16"), safe_serialization=True, variant="fp16")
    unet_a.save_pretrained(os.path.join(out, "unet_a_fp16_sharded"), safe_serialization=True, variant="fp16",
                           max_shard_size="1MB")

    vae = perturb(AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 64), layers_per_block=1,
        latent_channels=4, norm_num_groups=8, sample_size=16), seed=99)
    vae.save_pretrained(os.path.join(out, "vae"), safe_serialization=True)
    vae.train(False)
    with torch.no_grad():
        x = torch.rand(3, 3, 16, 12, generator=g) * 2 - 1
        dist = vae.encode(x).latent_dist
        tensors["vae/x"] = x
        tensors["vae/mean"] = dist.mean
        tensors["vae/logvar"] = dist.logvar
        tensors["vae/decoded"] = vae.decode(dist.mean).sample
    cases.append("vae")

    clips = {
        # transformers 5 layout, quick_gelu, pooling at the first eos id
        "clip_a": dict(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                       num_attention_heads=4, max_position_embeddings=12, eos_token_id=99, bos_token_id=98,
                       pad_token_id=0, hidden_act="quick_gelu"),
        # legacy: eos_token_id 2 pools at argmax(ids); gelu; keys saved with the "text_model." prefix
        "clip_b": dict(vocab_size=100, hidden_size=24, intermediate_size=40, num_hidden_layers=3,
                       num_attention_heads=3, max_position_embeddings=12, eos_token_id=2, bos_token_id=1,
                       pad_token_id=0, hidden_act="gelu"),
    }
    for name, cfg in clips.items():
        model = perturb(CLIPTextModel(CLIPTextConfig(**cfg)), seed=5 + len(tensors))
        folder = os.path.join(out, name)
        model.save_pretrained(folder, safe_serialization=True)
        if name == "clip_a":
            model.save_pretrained(folder + "_sharded", safe_serialization=True, max_shard_size="20KB")
        if name == "clip_b":
            w = load_file(os.path.join(folder, "model.safetensors"))
            save_file({"text_model." + k: v for k, v in w.items()}, os.path.join(folder, "model.safetensors"))
        model.train(False)
        ids = torch.randint(3, 98, (3, 12), generator=g)
        ids[:, 0] = cfg["bos_token_id"]
        for row, n in enumerate((5, 12, 8)):  # end token then padding (the end token pads too)
            ids[row, n - 1] = 99
            ids[row, n:] = 99 if name == "clip_a" else 0
        mask = (torch.arange(12)[None, :] < torch.tensor([5, 12, 8])[:, None]).long()
        with torch.no_grad():
            o = model(input_ids=ids)
            om = model(input_ids=ids, attention_mask=mask)
        tensors[f"{name}/ids"] = ids
        tensors[f"{name}/mask"] = mask
        tensors[f"{name}/hidden"] = o.last_hidden_state
        tensors[f"{name}/pooled"] = o.pooler_output
        tensors[f"{name}/hidden_masked"] = om.last_hidden_state
        cases.append(name)

    # ModelScopeT2V's block structure (4 levels, 2 layers, every block type) at a quarter of its
    # widths: state-dict names and shapes, built on the meta device (no memory, no time).
    with torch.device("meta"):
        ms = UNet3DConditionModel(block_out_channels=(64, 128, 256, 256), attention_head_dim=64,
                                  cross_attention_dim=256)
    with open(os.path.join(out, "modelscope_structure.json"), "w") as f:
        json.dump({"config": dict(ms.config), "shapes": {k: list(v.shape) for k, v in ms.state_dict().items()}}, f)

    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "golden.safetensors"),
              metadata={"cases": json.dumps(cases)})


if __name__ == "__main__":
    main()
