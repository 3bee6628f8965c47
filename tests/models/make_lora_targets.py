#!/usr/bin/env python3
"""Which layers of a UNet3DConditionModel or UNetMotionModel get a LoRA adapter, according to PEFT itself.

Usage: make_lora_targets.py SPEC_JSON OUT_DIR

SPEC_JSON is {"targets": [...], "exclude": [...], "models": {NAME: UNet config.json dict}}, our
LoraConfig's lists and the configurations to build (on the meta device: no memory, no time; the
class is the config's _class_name).
Writes OUT_DIR/targets.json, {NAME: {"peft": [...], "mcm_reference": [...]}}, module names:
  peft           wrapped by peft.inject_adapter_in_model(LoraConfig(target_modules=targets,
                 exclude_modules=R)), where R is the regular expression (PEFT full-matches a
                 string) that skips every module with an excluded dot-separated name component,
                 as our exclusion does (a list would only skip modules *named* like an exclusion)
  mcm_reference  wrapped when the layers are chosen the way MCM's own training script does for
                 ModelScope and AnimateDiff (main.py): every module whose name ends with a target,
                 except those whose name contains both "temp" and "conv", handed to PEFT as
                 target_modules (AnimateDiff has no temporal convs: its motion modules are adapted)
"""
import json
import os
import re
import sys

import torch
from diffusers import UNet3DConditionModel, UNetMotionModel
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer


def build(cfg):
    cls = UNetMotionModel if cfg.get("_class_name") == "UNetMotionModel" else UNet3DConditionModel
    with torch.device("meta"):
        return cls.from_config(cfg)


def wrapped(cfg, lora_config):
    unet = build(cfg)
    inject_adapter_in_model(lora_config, unet, low_cpu_mem_usage=True)
    return sorted(n for n, m in unet.named_modules() if isinstance(m, LoraLayer))


def mcm_reference(cfg, targets):
    unet = build(cfg)
    keys = [n for n, _ in unet.named_modules()
            if any(n.endswith(t) for t in targets) and not ("temp" in n and "conv" in n)]
    return wrapped(cfg, LoraConfig(r=4, lora_alpha=4, target_modules=keys))


def main():
    spec, out = json.loads(sys.argv[1]), sys.argv[2]
    exclude = "|".join(r"(.*\.)?%s(\..*)?" % re.escape(e) for e in spec["exclude"]) or None
    result = {}
    for name, cfg in spec["models"].items():
        peft_config = LoraConfig(r=4, lora_alpha=4, target_modules=spec["targets"], exclude_modules=exclude)
        result[name] = {"peft": wrapped(cfg, peft_config), "mcm_reference": mcm_reference(cfg, spec["targets"])}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "targets.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
