"""The AnimateDiff teacher kind through the stages as users run them: `mcm teacher` with
models.teacher.kind = "unet_motion" pretrains a small UNetMotionModel (SD1.5's structure with motion
modules), `mcm distill` distils it on 2 ranks with LoRA on the spatial layers and the motion
modules, `mcm sample` samples teacher and student; diffusers' UNetMotionModel loads the teacher and
the merged student and gives our outputs; a folder of the other kind, or an SD1.5 UNet with a
motion adapter that does not fit the data, is refused with the key and the file named. Run by
ctest (stages.motion_teacher, label mpi)."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import torch
from safetensors.torch import load_file

from test_pipeline import MCM, mcm
from test_teacher import FAST as TEACHER_FAST

DATA = ["synth.videos=12", "synth.images=8", "synth.image_shards=2", "prep.encode_images=true"]
MOTION = ["models.teacher.kind=\"unet_motion\"", "teacher.steps=6", "teacher.head_dim=8"]
DISTILL = ["distill.steps=3", "distill.lora_rank=4", "distill.lora_alpha=4", "distill.motion_hidden=8",
           "distill.motion_groups=4", "distill.eval_prompts=0", "distill.batch=2", "distill.micro_batch=1"]
SAMPLE = ["sample.count=2", "sample.steps=[1]", "sample.methods=[\"teacher_ddim\", \"student\"]"]


class MotionTeacher(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="mcm-motion-")
        cls.rd = os.path.join(cls.tmp, "run")
        cls.sets = DATA + TEACHER_FAST + MOTION + DISTILL + SAMPLE
        mcm(["synth"], cls.rd, cls.sets)
        mcm(["prep"], cls.rd, cls.sets)
        mcm(["teacher"], cls.rd, cls.sets)
        cls.distill = mcm(["distill"], cls.rd, cls.sets, np_=2)
        mcm(["sample"], cls.rd, cls.sets, np_=2)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_teacher_and_student_are_unet_motion_models_diffusers_runs(self):
        from diffusers import UNetMotionModel
        for folder in ("teacher/unet", "distill/student/unet"):
            with open(os.path.join(self.rd, folder, "config.json")) as f:
                self.assertEqual(json.load(f)["_class_name"], "UNetMotionModel", folder)
            m = UNetMotionModel.from_pretrained(os.path.join(self.rd, folder)).eval()
            x = torch.randn(1, m.config.in_channels, 4, 8, 8)
            with torch.no_grad():
                y = m(x, torch.tensor([500]), encoder_hidden_states=torch.randn(4, 3, m.config.cross_attention_dim)).sample
            self.assertEqual(tuple(y.shape), tuple(x.shape))
            self.assertTrue(torch.isfinite(y).all())
        # MCM's LoRA list adapts the motion modules of AnimateDiff too (no temporal convs to skip).
        lora = load_file(os.path.join(self.rd, "distill", "student", "lora", "pytorch_lora_weights.safetensors"))
        self.assertTrue(any(".motion_modules." in k for k in lora), list(lora)[:5])
        self.assertTrue(any(".attentions." in k for k in lora))
        self.assertIn("UNetMotionModel", self.distill.stdout + self.distill.stderr)
        for name in ("teacher_ddim_1step", "student_1step"):
            self.assertTrue(os.path.exists(os.path.join(self.rd, "sample", name + ".h5")), name)

    def test_kind_and_folder_must_agree(self):
        # The embedded teacher is a UNetMotionModel: naming it as a UNet3D teacher is refused.
        p = mcm(["distill"], self.rd, self.sets + [f"models.teacher.path=\"{self.rd}/teacher/unet\"",
                                                    "models.teacher.kind=\"unet3d\""], check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("models.teacher.kind = \"unet3d\"", p.stderr)
        self.assertIn("UNetMotionModel", p.stderr)
        p = mcm(["teacher"], self.rd, self.sets + ["models.teacher.motion_adapter=\"/x\""], check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("models.teacher.motion_adapter", p.stderr)
        p = mcm(["teacher"], self.rd, self.sets + ["models.teacher.beta_schedule=\"cosine\""], check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("models.teacher.beta_schedule", p.stderr)

    def test_sd15_unet_with_motion_adapter_is_checked_against_the_data(self):
        # An SD1.5-style unet/ + motion_adapter/ (the parity goldens' tiny pair, 4-channel latents and
        # 48-wide text) against this run's 12-channel latents: `mcm teacher` names the mismatch.
        golden = os.path.join(self.tmp, "sd15")
        gen = os.path.join(os.path.dirname(__file__), "..", "models", "make_motion_golden.py")
        py = os.path.join(os.path.dirname(__file__), "..", "..", ".venv", "bin", "python")
        subprocess.run([py if os.path.exists(py) else "python3", gen, golden], check=True, capture_output=True)
        run = os.path.join(self.tmp, "external")
        shutil.copytree(os.path.join(self.rd, "prep"), os.path.join(run, "prep"))
        p = mcm(["teacher"], run, self.sets + [f"models.teacher.path=\"{golden}/unet\"",
                                               f"models.teacher.motion_adapter=\"{golden}/motion_adapter\""], check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("in_channels 4", p.stderr + p.stdout)
        # Without the adapter the SD1.5 folder is an image UNet: refused, with the key to set.
        p = mcm(["teacher"], run, self.sets + [f"models.teacher.path=\"{golden}/unet\""], check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("models.teacher.motion_adapter", p.stderr + p.stdout)


if __name__ == "__main__":
    unittest.main()
