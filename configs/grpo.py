"""Stage 2: GRPO post-training of the gaze model against a frozen reconstructor.

  # CPU, minutes: a stage-0 reconstructor first, then GRPO from a random (or NTP) gaze model
  autogaze-jax train --config configs/recon.py:tiny --workdir runs/recon_tiny
  autogaze-jax train --config configs/grpo.py:tiny --workdir runs/grpo_tiny \
      --config.oracle.workdir=runs/recon_tiny [--config.init_gaze=runs/ntp_tiny/gaze_final]
  # official scales, test-sized reconstructor (an accelerator helps)
  autogaze-jax train --config configs/grpo.py:small --workdir runs/grpo_small --config.oracle.workdir=runs/recon_small
  # the paper's setup: NTP gaze model, official VideoMAE weights (or a stage-0 large run)
  autogaze-jax train --config configs/grpo.py:official --workdir gs://BUCKET/grpo \
      --config.init_gaze=gs://BUCKET/ntp/gaze_final --config.oracle.weights=videomae.pt

Overrides: --config.steps=500 --config.grpo.group_size=8 "--config.grpo.eps_range=(0.8,1.2)"
"""

import common  # configs/common.py
import ml_collections


def get_config(arg: str = "tiny"):
  """tiny: 64-px 8-frame clips, scales 32+64 (V=20), K=1, Adam; learns in minutes on a CPU.
  small: the official scales 32+64+112+224 and gaze architecture (K=10) with a test-sized
  reconstructor. official: the official recipe (docs/design.md, "GRPO" and "Optimizers"): G=12, 64 clips (768 rollouts) per
  optimizer step, SGD 5e-4 with 10% warmup and linear decay to 0, τ 3 -> 0.3, γ=0.995. paper: the
  paper's recipe where it differs from that script (`_paper`)."""
  pick = common.picker("grpo", arg)
  c = common.gaze_stage("grpo", arg)
  c.init_gaze = ""  # our gaze checkpoint (e.g. NTP's gaze_final/) or official weights; "" = random
  c.batch_size = pick(4, 2, 64)  # clips per optimizer step; each is rolled out group_size times
  c.steps = pick(100, 200, 2000)  # official: one epoch of the RL data at 64 clips per step
  c.log_every = pick(1, 5, 10)  # tiny: every step, so the reward summaries average 30 steps
  c.checkpoint_every = pick(50, 50, 500)
  c.grpo = ml_collections.ConfigDict(dict(
    group_size=pick(8, 4, 12),
    # Per-frame cap of the pilot rollout, int(ratio * V) (official 0.75), and ε ~ U[min, max]
    # per clip for its stop rule. tiny: fixed budgets instead (no pilot; every frame gets the
    # cap), so the reward is at one cost throughout and its curve shows learning, not
    # budget drift. 5 gazes (ratio 0.25), near where NTP with its DAgger round reaches eps (val
    # 0.266), chosen on val: from that NTP model (64 val clips of seed 0) GRPO's gain at 5 gazes
    # -0.025 [-0.036, -0.014], at the former 6 -0.012 [-0.026, +0.002]; 5 minus 6 -0.013 [-0.024,
    # -0.004] (docs/results.md, "GRPO's budget after the DAgger round"; 6 had been chosen over 4
    # for the NTP model before the round, "One gaze per decoding step").
    pilot_ratio=pick(0.25, 0.75, 0.75), fixed_budget=pick(True, False, False),
    eps_range=pick((0.55, 0.65), (0.9, 1.3), (0.5, 1.0)),
    gamma=0.995, temp_start=3.0, temp_end=0.3,
    # R = int(T * rate) rewarded frames per clip; tiny rewards every frame (cheap at 64 px, and
    # every frame's gazes get direct credit)
    recon_sample_rate=pick(1.0, 0.125, 0.125),
    # One ε and one set of rewarded frames per step for every clip (official) or a draw per
    # clip (ours: the clips of a step then cover more thresholds and frames)
    shared_draws=pick(False, False, True),
    top_k=50, decode_segments=pick(1, 4, 4),
    # Rollouts of each group per reconstructor pass and per policy-gradient pass (0 = all G at
    # once). The chunks run one after another with summed gradients (the same step), so peak
    # memory follows the chunk: official 1 is what fits 12 rollouts per chip (README, AOT).
    group_chunk=pick(0, 0, 1),
  ))
  # Held-out evaluation (the same clips and ratio grid as configs/ntp.py): the gaze ratio at
  # which budget-only greedy gazes reach loss <= eps, and the official stop-rule
  # validation (greedy, cap int(cap_ratio * V), stop at eps; the paper reports eps = 0.7).
  c.eval = ml_collections.ConfigDict(dict(
    every=pick(25, 50, 1000), num_clips=pick(16, 2, 16), eps=pick(0.4, 0.9, 0.7), cap_ratio=0.75,
    ratios=common.eval_ratios(arg), frames=pick((0, 3, 5, 7), (0, 5, 10, 15), (0, 5, 10, 15)),
  ))
  c.optimizer = ml_collections.ConfigDict(dict(
    name=pick("adamw", "adamw", "sgd"), lr=pick(1e-3, 3e-4, 5e-4),
    warmup_steps=pick(10, 20, 200), schedule="linear", min_lr=pick(1e-4, 3e-5, 0.0),
    weight_decay=0.0, momentum=0.0, grad_clip=pick(1.0, 1.0, 0.0),
  ))
  c.mesh = ml_collections.ConfigDict(dict(shape=(-1, 1)))
  if arg == "paper":
    _paper(c)
  return c


def _paper(c) -> None:
  """The paper (Appendix B) where it differs from the released RL script (`official`). Its Dr.
  GRPO (no std and no length normalisation) is what every variant runs already: group-mean
  advantages without a std, per-trajectory sums (train/grpo/advantages.py)."""
  c.batch_size = 256  # paper: batch 256 (script: 64 clips x 12 rollouts)
  c.steps = 1_500  # paper: 3 epochs (script: 1) of the script's RL data, ~128K clips, at batch 256
  c.grpo.temp_start, c.grpo.temp_end = 1.0, 0.01  # paper: temperature 1 -> 0.01 (script: 3 -> 0.3)
  c.grpo.recon_sample_rate = 2 / 16  # paper: 2 reconstructed frames per step (the script's too: 16 x 0.125)
