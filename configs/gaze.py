"""Gaze-model configs.

  released  the architecture of the released nvidia/AutoGaze checkpoint (3,258,240 params)
  tiny      a test-sized model (64-px frames, scales 32+64, K=3)

Run: autogaze-jax gaze --config configs/gaze.py:released --video clip.mp4 --gazing-ratio 0.1
"""

from autogaze_jax.models import gaze_config


def get_config(arg: str = "released"):
  variants = {"released": gaze_config.released_config, "tiny": gaze_config.tiny_config}
  if arg not in variants:
    raise ValueError(f"configs/gaze.py: unknown variant {arg!r}; choose one of {sorted(variants)}")
  return variants[arg]()
