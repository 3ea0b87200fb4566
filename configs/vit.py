"""Gazed ViT (SigLIP2 vision tower) configs for `autogaze-jax encode` and the speed benchmark.

  tiny          test-sized widths (random weights), 224 px, 265 tokens per frame
  base16_224    SigLIP2-B/16 at 224: scales 32+64+112+224 (the gaze model's own layout)
  so400m14_384  SigLIP2-So400m/14-384 used at 392: scales 56+112+196+392, 1060 per frame

Run: autogaze-jax encode --vit siglip2.safetensors --vit-config configs/vit.py:base16_224 \
       --video clip.mp4 --gazing-ratio 0.1 --out features.npz
"""

from autogaze_jax.models import vit_config


def get_config(arg: str = "base16_224"):
  return vit_config.vit_config(arg)
