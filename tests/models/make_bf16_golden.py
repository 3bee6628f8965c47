#!/usr/bin/env python3
"""bfloat16 references for the *_CUDA parity tests, with the reference's own bf16 error.

Usage: make_bf16_golden.py DEVICE MODEL_GOLDEN_DIR OUT_DIR

MODEL_GOLDEN_DIR is make_model_golden.py's folder: the same tiny diffusers/transformers models and
the same inputs. On DEVICE (e.g. cuda), each model runs in float32 (TF32 off) and, loaded with
torch_dtype=bfloat16, with its inputs in bfloat16 (PyTorch's default bf16 settings, as ours). OUT_DIR/bf16.safetensors holds, for every
output the fp32 parity tests compare (keys as in golden.safetensors):
  <key>/fp32   the reference in float32 on DEVICE
  <key>/bf16   the reference in bfloat16 on DEVICE (stored as float32)
OUT_DIR/ref_error.json (and the file's metadata) maps each key to max |bf16 - fp32|: the error
bfloat16 costs the reference itself, which is what our bf16 models are held to; "device" names
the device. For the masked CLIP run only real (unpadded) positions count: padding rows are
zeroed in both.
"""
import json
import os
import sys

import torch
from diffusers import AutoencoderKL, UNet3DConditionModel
from safetensors.torch import load_file, save_file
from transformers import CLIPTextModel

torch.set_num_threads(1)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def main():
    device, src, out = torch.device(sys.argv[1]), sys.argv[2], sys.argv[3]
    g = load_file(os.path.join(src, "golden.safetensors"))
    results = {}  # key -> {dtype name: output}

    def run(load, forward):
        for dtype, tag in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            model = load(dtype).to(device)
            model.train(False)
            with torch.no_grad():
                for key, y in forward(model, lambda t: t.to(device, dtype if t.is_floating_point() else t.dtype)).items():
                    results.setdefault(key, {})[tag] = y.float().cpu()

    for name in ("unet_a", "unet_b"):
        def forward(unet, put, name=name):
            outs = {}
            for case in ("even", "odd"):
                k = f"{name}/{case}"
                cond = put(g[f"{k}/cond"]) if f"{k}/cond" in g else None
                outs[f"{k}/y"] = unet(put(g[f"{k}/x"]), put(g[f"{k}/t"]), encoder_hidden_states=put(g[f"{k}/ctx"]),
                                      timestep_cond=cond).sample
            return outs
        run(lambda dt, name=name: UNet3DConditionModel.from_pretrained(os.path.join(src, name), torch_dtype=dt), forward)

    def vae_forward(vae, put):
        dist = vae.encode(put(g["vae/x"])).latent_dist
        return {"vae/mean": dist.mean, "vae/logvar": dist.logvar, "vae/decoded": vae.decode(put(g["vae/mean"])).sample}
    run(lambda dt: AutoencoderKL.from_pretrained(os.path.join(src, "vae"), torch_dtype=dt), vae_forward)

    for name in ("clip_a", "clip_b"):
        def forward(model, put, name=name):
            ids, mask = put(g[f"{name}/ids"]), put(g[f"{name}/mask"])
            o = model(input_ids=ids)
            om = model(input_ids=ids, attention_mask=mask)
            return {f"{name}/hidden": o.last_hidden_state, f"{name}/pooled": o.pooler_output,
                    f"{name}/hidden_masked": om.last_hidden_state * mask[..., None].to(om.last_hidden_state.dtype)}
        run(lambda dt, name=name: CLIPTextModel.from_pretrained(os.path.join(src, name), torch_dtype=dt), forward)

    tensors, errors = {}, {}
    for key, r in results.items():
        tensors[f"{key}/fp32"], tensors[f"{key}/bf16"] = r["fp32"], r["bf16"]
        errors[key] = (r["bf16"] - r["fp32"]).abs().max().item()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "bf16.safetensors"),
              metadata={"ref_error": json.dumps(errors), "device": name})
    with open(os.path.join(out, "ref_error.json"), "w") as f:
        json.dump({"device": name, "ref_error": errors}, f, indent=1)


if __name__ == "__main__":
    main()
