#!/usr/bin/env python3
"""Loads folders our C++ wrote back into diffusers and runs them, for test_lora.

Usage: diffusers_roundtrip.py INPUTS.safetensors OUT.safetensors UNET_DIR [BASE_DIR LORA_DIR]

INPUTS holds x, t, ctx. Writes OUT with "merged" = UNet3DConditionModel.from_pretrained(UNET_DIR)
output (UNetMotionModel when the folder's config says so; its context is repeated per frame, as
AnimateDiffPipeline does), and when BASE_DIR and LORA_DIR are given, "adapter" = the base UNet with our
pytorch_lora_weights.safetensors injected by PEFT (LoraConfig with lora_alpha = r, the convention
of a diffusers LoRA file without alphas), unmerged. UNet3DConditionModel has no
load_lora_adapter in diffusers 0.42 (it is not a PeftAdapterMixin), so PEFT is called directly,
as the MCM reference code does.
"""
import sys

import torch
import json

from diffusers import UNet3DConditionModel, UNetMotionModel
from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file

torch.set_num_threads(1)


def load(folder):
    with open(folder + "/config.json") as f:
        motion = json.load(f).get("_class_name") == "UNetMotionModel"
    return (UNetMotionModel if motion else UNet3DConditionModel).from_pretrained(folder)


def run(unet, inp):
    unet.train(False)
    ctx = inp["ctx"]
    if isinstance(unet, UNetMotionModel):
        ctx = ctx.repeat_interleave(inp["x"].shape[2], 0)
    with torch.no_grad():
        return unet(inp["x"], inp["t"], encoder_hidden_states=ctx).sample


def main():
    inp = load_file(sys.argv[1])
    out = {"merged": run(load(sys.argv[3]), inp)}
    if len(sys.argv) > 5:
        base = load(sys.argv[4])
        sd = load_file(sys.argv[5] + "/pytorch_lora_weights.safetensors")
        sd = {k[len("unet."):]: v for k, v in sd.items()}
        modules = sorted({k.rsplit(".lora_", 1)[0] for k in sd})
        rank = next(v.shape[0] for k, v in sd.items() if k.endswith("lora_A.weight"))
        inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=modules), base, adapter_name="mcm")
        result = set_peft_model_state_dict(base, sd, adapter_name="mcm")
        assert not result.unexpected_keys, result.unexpected_keys
        # diffusers 0.42.1's AnimateDiffTransformer3D calls proj_in/proj_out as Linear(input=x),
        # a keyword PEFT's LoRA layer does not take: pass it on positionally (the adapter's values
        # are what this checks; README "AnimateDiff" says what it means for users).
        for name, m in base.named_modules():
            if isinstance(m, LoraLayer) and ".motion_modules." in name and name.endswith((".proj_in", ".proj_out")):
                m.forward = (lambda f: lambda *a, input=None, **k: f(input, *a, **k) if input is not None else f(*a, **k))(m.forward)
        out["adapter"] = run(base, inp)
    save_file({k: v.contiguous() for k, v in out.items()}, sys.argv[2])


if __name__ == "__main__":
    main()
