"""Stage 1: NTP pre-training of the gaze model on greedy labels (TRAINING.md §4, §6).

  # CPU, minutes: a stage-0 reconstructor, greedy labels of synthetic clips, then NTP
  autogaze-jax train --config configs/recon.py:tiny --workdir runs/recon_tiny
  autogaze-jax label --config configs/ntp.py:tiny --recon-checkpoint runs/recon_tiny --out runs/ntp_tiny_labels.json
  autogaze-jax train --config configs/ntp.py:tiny --workdir runs/ntp_tiny \
      --config.labels=runs/ntp_tiny_labels.json --config.recon_workdir=runs/recon_tiny
  # official scales and gaze architecture (K=10), test-sized reconstructor (an accelerator helps)
  autogaze-jax train --config configs/ntp.py:small --workdir runs/ntp_small --config.labels=... --config.recon_workdir=...
  # the paper's setup: released labels (comma-separated files / globs), global batch 1024
  autogaze-jax train --config configs/ntp.py:official --workdir gs://bucket/ntp \
      --config.labels=gazing_labels.json --config.recon_weights=videomae.pt

The trained gaze model is written to <workdir>/gaze_final (AutoGaze.from_pretrained reads it;
GRPO's --config.init_gaze takes it). Overrides: --config.steps=500 --config.optimizer.lr=1e-3
"""

import ml_collections

from autogaze_jax.train import config_common


def get_config(arg: str = "tiny"):
  """tiny: 64-px 8-frame clips, scales 32+64 (V=20), the tiny gaze model (K=3), matching
  configs/recon.py:tiny. small: official scales 32+64+112+224 (V=265) and the released gaze
  architecture (K=10) with a test-sized reconstructor. official: §7.2-§7.3 literally: global
  batch 1024 in micro-batches of 256 (grad accumulation 4), Adam 5e-4 -> 1e-5 linearly, no
  warmup, no clipping, 150 epochs of ~250K labelled clips (~36.6K optimizer steps)."""
  pick = config_common.picker("ntp", arg)
  c = config_common.gaze_stage("ntp", arg)
  # gazing_labels.json file(s): comma-separated paths or glob patterns; training reads only
  # the clips of config.data that have labels (keys: the last three path components).
  c.labels = ""
  c.data.labels = c.get_ref("labels")
  c.batch_size = pick(16, 8, 1024)  # clips per optimizer step (global)
  c.micro_batch_size = pick(0, 0, 256)  # 0: no accumulation; else batch_size / this micro-steps
  c.steps = pick(200, 2000, 36_600)
  c.log_every = pick(10, 10, 50)
  c.checkpoint_every = pick(100, 200, 500)
  c.nan_guard = True  # raise (naming the quantity) on a non-finite step; the update is skipped anyway
  c.loss = ml_collections.ConfigDict(dict(optimize_task_loss_prediction=True, tlp_weight=1.0))
  c.optimizer = ml_collections.ConfigDict(dict(
    name="adam", lr=pick(3e-3, 5e-4, 5e-4), min_lr=1e-5, schedule="linear", grad_clip=0.0,
  ))
  # Greedy labelling (`autogaze-jax label`): per-frame budgets int(ratio * V), first frame
  # larger (the official labels are first-frame heavy, §6.3); stop once loss <= eps. tiny: eps
  # and the eval eps sit inside the range of a 3000-step configs/recon.py:tiny reconstructor's
  # per-frame losses on the synthetic clips (about 0.65-1.3; greedy labels end near 1.18 on average).
  c.label = ml_collections.ConfigDict(dict(
    eps=pick(0.8, 0.9, 0.7), budget_ratio_first=pick(0.5, 0.3, 0.3), budget_ratio=pick(0.25, 0.1, 0.1),
    num_candidates=pick(10, 64, 64),  # 0: all V tokens per step; else a random subset per step
    chunk=pick(20, 16, 32), batch_size=pick(8, 2, 8), num_clips=pick(64, 64, 250_000),
  ))
  # Held-out evaluation: the smallest gaze ratio (of `ratios`) whose greedy budget-only gazes
  # reach a reconstruction loss <= eps on `frames`, per clip (1.0 if none does).
  c.eval = ml_collections.ConfigDict(dict(
    every=pick(50, 200, 3000), num_clips=pick(8, 2, 16), eps=pick(1.2, 0.9, 0.7),
    ratios=(0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0), frames=pick((0, 3, 5, 7), (0, 5, 10, 15), (0, 5, 10, 15)),
  ))
  c.mesh = ml_collections.ConfigDict(dict(shape=(-1, 1)))
  return c
