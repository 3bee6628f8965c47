#!/usr/bin/env python3
"""Golden tensors for our UNetMotionModel (AnimateDiff), made with diffusers itself.

Usage: make_motion_golden.py OUT_DIR

Writes, for a tiny random SD1.5-style UNet2DConditionModel and MotionAdapter (every parameter
perturbed, so the motion modules' projections and the zero-initialised layers are exercised;
cross_attention_dim differs from every width and the motion heads from the spatial heads, so a
swapped shape cannot pass):
  OUT_DIR/unet/, OUT_DIR/motion_adapter/   the two folders from_unet2d starts from
  OUT_DIR/unet_motion/                      UNetMotionModel.from_unet2d(unet, adapter).save_pretrained
  OUT_DIR/unet_motion_mid/                  the same without a motion mid block (v1-5-3 style), 2 temporal layers
  OUT_DIR/golden.safetensors                inputs, outputs and gradients, keyed "<model>/<case>/<name>"
  OUT_DIR/sd15_structure.json               SD1.5 + v1-5-2 at a quarter of the widths (names and shapes,
                                            built on the meta device), and the full model's counts
"""
import json
import os
import sys

import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

from make_model_golden import perturb  # every parameter moved off its init, as for the UNet3D goldens

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def sd15_unet(**kw):
    cfg = dict(sample_size=16, in_channels=4, out_channels=4,
               down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
               block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=32, cross_attention_dim=48,
               attention_head_dim=2)
    cfg.update(kw)
    return UNet2DConditionModel(**cfg)


GRADS = ("conv_in.weight", "down_blocks.0.attentions.0.proj_in.weight",
         "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
         "down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q.weight",
         "down_blocks.1.motion_modules.0.proj_out.weight", "up_blocks.1.motion_modules.1.transformer_blocks.0.ff.net.2.weight",
         "time_embedding.linear_1.weight", "conv_out.weight")


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    tensors = {}
    g = torch.Generator().manual_seed(4321)

    models = {}
    unet = perturb(sd15_unet(), seed=11)
    adapter = perturb(MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=1, motion_norm_num_groups=32,
                                    motion_num_attention_heads=4, motion_max_seq_length=32, use_motion_mid_block=True),
                      seed=12)
    unet.save_pretrained(os.path.join(out, "unet"), safe_serialization=True)
    adapter.save_pretrained(os.path.join(out, "motion_adapter"), safe_serialization=True)
    models["unet_motion"] = UNetMotionModel.from_unet2d(unet, adapter)
    # No motion mid block, two temporal transformer layers, LCM-style w-conditioning on the UNet.
    unet_b = perturb(sd15_unet(time_cond_proj_dim=6, mid_block_scale_factor=1.5), seed=13)
    adapter_b = perturb(MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=1, motion_norm_num_groups=32,
                                      motion_num_attention_heads=2, motion_max_seq_length=16, use_motion_mid_block=False,
                                      motion_transformer_layers_per_block=2), seed=14)
    models["unet_motion_mid"] = UNetMotionModel.from_unet2d(unet_b, adapter_b)
    for name, m in models.items():
        m.save_pretrained(os.path.join(out, name), safe_serialization=True)

    shapes = {"even": (2, 4, 8, 16, 16), "odd": (1, 4, 5, 15, 13)}
    for name, m in models.items():
        m.train(False)
        for case, shape in shapes.items():
            B, F = shape[0], shape[2]
            x = torch.randn(shape, generator=g)
            t = torch.tensor([10, 999][:B], dtype=torch.int64)
            ctx = torch.randn(B, 7, 48, generator=g)
            cond = torch.randn(B, 6, generator=g) if name == "unet_motion_mid" else None
            m.zero_grad()
            # diffusers takes the context per frame (AnimateDiffPipeline repeats it); ours per video.
            y = m(x, t, encoder_hidden_states=ctx.repeat_interleave(F, 0), timestep_cond=cond).sample
            (y * y).mean().backward()
            key = f"{name}/{case}"
            tensors[f"{key}/x"], tensors[f"{key}/t"], tensors[f"{key}/ctx"] = x, t, ctx
            if cond is not None:
                tensors[f"{key}/cond"] = cond
            tensors[f"{key}/y"] = y.detach()
            params = dict(m.named_parameters())
            for p in GRADS:
                tensors[f"{key}/grad/{p}"] = params[p].grad.detach().clone()

    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "golden.safetensors"))

    # SD1.5 (runwayml unet/config.json) + motion adapter v1-5-2 (hub config.json), on the meta device.
    sd15 = dict(act_fn="silu", attention_head_dim=8, block_out_channels=(320, 640, 1280, 1280),
                center_input_sample=False, cross_attention_dim=768,
                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",), downsample_padding=1,
                flip_sin_to_cos=True, freq_shift=0, in_channels=4, layers_per_block=2, mid_block_scale_factor=1,
                norm_eps=1e-5, norm_num_groups=32, out_channels=4, sample_size=64,
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    v152 = dict(block_out_channels=(320, 640, 1280, 1280), motion_layers_per_block=2, motion_max_seq_length=32,
                motion_mid_block_layers_per_block=1, motion_norm_num_groups=32, motion_num_attention_heads=8,
                use_motion_mid_block=True)
    structure = {}
    for label, scale in (("full", 1), ("quarter", 4)):
        u = dict(sd15, block_out_channels=tuple(c // scale for c in sd15["block_out_channels"]),
                 norm_num_groups=32 // scale)
        a = dict(v152, block_out_channels=u["block_out_channels"], motion_norm_num_groups=32 // scale)
        with torch.device("meta"):
            m = UNetMotionModel.from_unet2d(UNet2DConditionModel(**u), MotionAdapter(**a), load_weights=False)
        sd = m.state_dict()
        structure[label] = {
            "unet_config": u, "adapter_config": a,
            "parameters": sum(p.numel() for p in m.parameters()),
            "motion_parameters": sum(p.numel() for n, p in m.named_parameters() if ".motion_modules." in n),
            "keys": len(sd),
        }
        structure[label]["shapes"] = {k: list(v.shape) for k, v in sd.items()}
    with open(os.path.join(out, "sd15_structure.json"), "w") as f:
        json.dump(structure, f)


if __name__ == "__main__":
    main()
