#!/usr/bin/env python3
"""Loads folders our C++ wrote back into diffusers and runs them, for test_lora.

Usage: diffusers_roundtrip.py INPUTS.safetensors OUT.safetensors UNET_DIR [BASE_DIR LORA_DIR]

INPUTS holds x, t, ctx. Writes OUT with "merged" = UNet3DConditionModel.from_pretrained(UNET_DIR)
output, and when BASE_DIR and LORA_DIR are given, "adapter" = the base UNet with our
pytorch_lora_weights.safetensors injected by PEFT (LoraConfig with lora_alpha = r, the convention
of a diffusers LoRA file without alphas), unmerged. UNet3DConditionModel has no
load_lora_adapter in diffusers 0.42 (it is not a PeftAdapterMixin), so PEFT is called directly,
as the MCM reference code does.
"""
import sys

import torch
from diffusers import UNet3DConditionModel
from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

torch.set_num_threads(1)


def run(unet, inp):
    unet.train(False)
    with torch.no_grad():
        return unet(inp["x"], inp["t"], encoder_hidden_states=inp["ctx"]).sample


def main():
    inp = load_file(sys.argv[1])
    out = {"merged": run(UNet3DConditionModel.from_pretrained(sys.argv[3]), inp)}
    if len(sys.argv) > 5:
        base = UNet3DConditionModel.from_pretrained(sys.argv[4])
        sd = load_file(sys.argv[5] + "/pytorch_lora_weights.safetensors")
        sd = {k[len("unet."):]: v for k, v in sd.items()}
        modules = sorted({k.rsplit(".lora_", 1)[0] for k in sd})
        rank = next(v.shape[0] for k, v in sd.items() if k.endswith("lora_A.weight"))
        inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=modules), base, adapter_name="mcm")
        result = set_peft_model_state_dict(base, sd, adapter_name="mcm")
        assert not result.unexpected_keys, result.unexpected_keys
        out["adapter"] = run(base, inp)
    save_file({k: v.contiguous() for k, v in out.items()}, sys.argv[2])


if __name__ == "__main__":
    main()
