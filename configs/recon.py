"""Stage 0: train the reconstructor on random multi-scale gazes.

  autogaze-jax train --config configs/recon.py:tiny --workdir runs/recon_tiny     # CPU, minutes
  autogaze-jax train --config configs/recon.py:large --workdir gs://bucket/recon  # pod

Overrides: --config.steps=500 --config.optimizer.lr=3e-4 "--config.mesh.shape=(-1,2)"
"""

import ml_collections

from autogaze_jax import recon_config


VARIANTS = ("tiny", "small", "base", "large")


def get_config(arg: str = "tiny"):
  """tiny: 64-px clips, scales 32+64, learns in minutes on a CPU. small: the official
  224-px scales 32+64+112+224 with test-sized widths. base/large: official widths."""
  if arg not in VARIANTS:
    raise ValueError(f"configs/recon.py: unknown variant {arg!r}; choose one of {', '.join(VARIANTS)}")
  pick = lambda tiny, small, base, large: dict(tiny=tiny, small=small, base=base, large=large)[arg]
  c = ml_collections.ConfigDict()
  c.stage = "recon"
  c.model = recon_config.recon_config("tiny" if arg in ("tiny", "small") else arg)
  if arg == "tiny":
    c.model.scales = (32, 64)
  c.seed = 0
  c.clip_len = pick(8, 16, 16, 16)
  c.image_size = pick(64, 224, 224, 224)
  c.batch_size = pick(8, 4, 64, 256)
  c.steps = pick(3000, 2000, 50_000, 100_000)
  c.log_every = pick(20, 10, 50, 50)
  c.checkpoint_every = pick(200, 200, 1000, 1000)
  c.gaze = ml_collections.ConfigDict(dict(ratio_min=0.02, ratio_max=0.3))
  c.eval = ml_collections.ConfigDict(dict(every=pick(250, 100, 1000, 1000), num_clips=pick(4, 2, 8, 8),
                                          ratios=(0.1, 0.3), frames=(0, 3, 5, 7) if arg == "tiny" else (0, 5, 10, 15)))
  c.optimizer = ml_collections.ConfigDict(dict(
    name="adamw", lr=pick(2e-3, 1e-3, 1.5e-4, 1.5e-4), warmup_steps=pick(30, 50, 2000, 2000),
    final_lr_fraction=0.1, weight_decay=0.05, momentum=0.9, grad_clip=1.0,
  ))
  # Perceptual terms: paths of HF-layout safetensors (empty = L1 only, the default here).
  c.perceptual = ml_collections.ConfigDict(dict(dinov2="", siglip2="", weights=(0.3, 0.3), size="base"))
  c.mesh = ml_collections.ConfigDict(dict(shape=(-1, 1)))
  return c
