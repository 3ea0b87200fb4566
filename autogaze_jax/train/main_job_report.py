"""The main job's report: report.json (numbers; the test split's under keys that say `test`),
report.md (a person's summary: tables with intervals, targets, curves, gaze pictures),
loss_vs_ratio.png (every policy's mean test curve with its 95 % band) and grpo_heldout.png
(GRPO's greedy held-out loss over steps against the policy it started from)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from autogaze_jax import pictures, storage
from autogaze_jax.train import clip_stats, metric_log

LABELS = {"random": "random gazes", "untrained": "untrained model", "ntp": "NTP", "grpo": "NTP + GRPO",
          "grpo_untrained": "GRPO from untrained", "oracle": "greedy oracle"}
COLOURS = {"random": "#888", "untrained": "#c66", "ntp": "#48c", "grpo": "#2a5", "grpo_untrained": "#c90",
           "oracle": "#000"}
FIXED_RATIOS = (0.1, 0.2, 0.3)
# The targets on the test split: NTP needs <= 0.6x random's patches; NTP + GRPO fewer
# than NTP (paired interval excluding 0); NTP recovers >= 70 % of the oracle's saving over random.
NTP_OVER_RANDOM_MAX, RECOVERY_MIN = 0.6, 0.7


def summaries(curves: dict, eps: float) -> dict:
  """{set: {policy: clip_stats.summarize row}} of heldout_curves.json's curves."""
  return {s: {p: clip_stats.summarize(loss, c["ratios"], eps, FIXED_RATIOS) for p, loss in c["loss"].items()}
          for s, c in curves.items()}


def differences(rows: dict) -> dict:
  """Paired (same clips) differences of the ratio to reach eps, with bootstrap intervals."""
  pairs = {"grpo_minus_ntp": ("grpo", "ntp"), "ntp_minus_random": ("ntp", "random"),
           "ntp_minus_untrained": ("ntp", "untrained"), "grpo_untrained_minus_untrained": ("grpo_untrained", "untrained"),
           "ntp_minus_oracle": ("ntp", "oracle")}
  return {name: clip_stats.paired_difference(rows[a]["per_clip_ratio"], rows[b]["per_clip_ratio"])
          for name, (a, b) in pairs.items()}


def targets(rows: dict, diff: dict) -> dict:
  r = {p: rows[p]["ratio_at_eps"] for p in rows}
  saving = r["random"] - r["oracle"]
  recovery = (r["random"] - r["ntp"]) / saving if saving > 0 else None
  return {
    "ntp_over_random": r["ntp"] / r["random"], "ntp_over_random_met": r["ntp"] <= NTP_OVER_RANDOM_MAX * r["random"],
    "grpo_below_ntp": r["grpo"] < r["ntp"],
    "grpo_minus_ntp_interval_excludes_0": diff["grpo_minus_ntp"]["excludes_0"] and r["grpo"] < r["ntp"],
    "oracle_saving_over_random": saving, "ntp_recovers_of_oracle_saving": recovery,
    "ntp_recovery_met": recovery is not None and recovery >= RECOVERY_MIN,
  }


def _grpo_curve(workdir: str, name: str, ratio: float) -> tuple[float | None, list]:
  """(the evaluated ratio nearest `ratio`, [(step, greedy val loss there)]) of a GRPO run's
  periodic evaluations; step 0 is the policy it started from."""
  rows = metric_log.read(os.path.join(workdir, name, "metrics.jsonl"))
  ratios = sorted({float(k[len("eval_loss_at_"):]) for r in rows for k in r if k.startswith("eval_loss_at_")})
  if not ratios:
    return None, []
  near = min(ratios, key=lambda x: abs(x - ratio))
  key = f"eval_loss_at_{near:.3g}"
  return near, [(r["step"], r[key]) for r in rows if key in r]


def _curve_plot(path: str, curves: dict, rows: dict, eps: float) -> None:
  sets = list(curves)
  fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4), squeeze=False)
  for ax, s in zip(axes[0], sets):
    for p, row in rows[s].items():
      x, c = row["curve"]["ratios"], row["curve"]
      mean = np.array(c["mean"], np.float64)  # None: a budget not measured
      lo, hi = np.array([b if b is not None else (np.nan, np.nan) for b in c["ci95"]], np.float64).T
      ax.plot(x, mean, marker="o", ms=3, color=COLOURS[p], label=LABELS[p])
      ax.fill_between(x, lo, hi, color=COLOURS[p], alpha=0.15)
    ax.axhline(eps, ls=":", color="k", lw=0.8)
    ax.set_xlabel("gaze ratio per frame")
    ax.set_ylabel("reconstruction loss (L1)")
    ax.set_title(f"test clips: {s} ({len(rows[s]['random']['per_clip_ratio'])}); bands: 95 % bootstrap")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  pictures.save(fig, path, dpi=110)


def _grpo_plot(path: str, runs: dict, budget_ratio: float) -> None:
  fig, ax = plt.subplots(figsize=(6, 3.6))
  for name, pts in runs.items():
    if pts:
      s, v = zip(*pts)
      ax.plot(s, v, marker="o", color=COLOURS[name], label=LABELS[name])
      ax.axhline(v[0], ls="--", lw=0.8, color=COLOURS[name])
  ax.set_xlabel("GRPO step")
  ax.set_ylabel(f"greedy loss at ratio {budget_ratio:g} (val clips)")
  ax.set_title("GRPO, greedy held-out loss (dashed: the starting policy)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  pictures.save(fig, path, dpi=110)


def _ci(x) -> str:
  return f"[{x[0]:.3f}, {x[1]:.3f}]"


def table(rows: dict, eps: float) -> list[str]:
  fixed = " | ".join(f"loss at {x:g}" for x in FIXED_RATIOS)
  lines = [f"| policy | ratio to reach {eps:g}: mean | 95 % interval | median | clips reaching | "
           f"mean loss over ratios <= 0.3 | {fixed} |", "|---|" + "---|" * (5 + len(FIXED_RATIOS))]
  num = lambda x: "n/a" if x is None else f"{x:.3f}"
  for p, r in rows.items():
    auc = "n/a" if r["auc"] is None else f"{r['auc']:.3f} {_ci(r['auc_ci95'])}"
    lines.append(f"| {LABELS[p]} | {r['ratio_at_eps']:.3f} | {_ci(r['ratio_at_eps_ci95'])} | "
                 f"{r['ratio_at_eps_median']:.3f} | {r['reach_fraction']:.2f} | {auc} | "
                 + " | ".join(num(r[f"loss_at_{x:g}"]) for x in FIXED_RATIOS) + " |")
  return lines


def _difference_lines(diff: dict) -> list[str]:
  lines = ["| difference of the ratio to reach ε (paired, same clips) | mean | 95 % interval | excludes 0 |",
           "|---|---|---|---|"]
  lines += [f"| {name.replace('_minus_', ' - ')} | {d['mean']:+.3f} | {_ci(d['ci95'])} | {'yes' if d['excludes_0'] else 'no'} |"
            for name, d in diff.items()]
  return lines


def write(workdir: str, cfgs: dict, result: dict, times: dict) -> dict:
  eps = result["eps"]
  rows = summaries(result["curves"], eps)
  diff = {s: differences(r) for s, r in rows.items()}
  goal = targets(rows["generated"], diff["generated"])
  g = cfgs["grpo"].grpo
  curves = {n: _grpo_curve(workdir, n, g.pilot_ratio if g.get("fixed_budget", False) else 0.2)
            for n in ("grpo", "grpo_untrained")}
  budget_ratio = curves["grpo"][0] if curves["grpo"][0] is not None else float("nan")
  grpo_runs = {n: pts for n, (_, pts) in curves.items()}
  ntp_report = os.path.join(workdir, "ntp", "report.json")
  dagger_round = storage.read_json(ntp_report).get("dagger") if storage.exists(ntp_report) else None
  report = {
    "eps": eps, "test_clips": result["clips"], "test": rows, "test_differences": diff, "test_targets": goal,
    "ntp_dagger_round": dagger_round,
    "grpo_val_greedy_loss_by_step": {"budget_ratio": budget_ratio, **grpo_runs},
    "seeds": {name: cfg.seed for name, cfg in cfgs.items()},
    "wall_s": times, "total_wall_s": round(sum(times.values()), 1),
  }
  storage.write_json(os.path.join(workdir, "report.json"), report)
  _curve_plot(os.path.join(workdir, "loss_vs_ratio.png"), result["curves"], rows, eps)
  _grpo_plot(os.path.join(workdir, "grpo_heldout.png"), grpo_runs, budget_ratio)
  verdict = lambda ok: "met" if ok else "**missed**"
  rec = goal["ntp_recovers_of_oracle_saving"]
  lines = ["# AutoGaze, end to end on the embedded default (CPU-sized)", "",
           f"Seed {cfgs['recon'].seed} (initialisations, data order and clips). Every number below is on the test "
           f"clips, which no stage and no setting looked at: {result['clips']}. A policy's ratio is where its "
           f"greedy gazes at a fixed number per frame first reach loss ε = {eps:g} (1.0 for a clip that never "
           "does); intervals are 95 % bootstrap intervals over clips.", ""]
  for s in rows:
    lines += [f"## Test clips: {s} ({result['clips'][s]})", ""] + table(rows[s], eps) + [""]
    lines += _difference_lines(diff[s]) + [""]
  lines += ["## Targets (generated test clips)", "",
            f"- NTP / random ratio: {goal['ntp_over_random']:.2f} (target <= {NTP_OVER_RANDOM_MAX}): "
            f"{verdict(goal['ntp_over_random_met'])}.",
            f"- NTP + GRPO below NTP with a paired interval excluding 0: "
            f"{verdict(goal['grpo_minus_ntp_interval_excludes_0'])} (difference "
            f"{diff['generated']['grpo_minus_ntp']['mean']:+.3f} {_ci(diff['generated']['grpo_minus_ntp']['ci95'])}).",
            f"- NTP recovers {'n/a' if rec is None else f'{rec:.0%}'} of the oracle's saving over random "
            f"({goal['oracle_saving_over_random']:.3f}; target >= {RECOVERY_MIN:.0%}): {verdict(goal['ntp_recovery_met'])}.",
            "", "![loss vs ratio](loss_vs_ratio.png)", "",
            "## GRPO's learning signal", "",
            f"Greedy decoding does not follow the sampling temperature: the greedy loss at the training budget "
            f"(ratio {budget_ratio:g}) on the val clips, by step, against the starting policy (step 0):", ""]
  for n, pts in grpo_runs.items():
    if pts:
      lines.append(f"- {LABELS[n]}: " + ", ".join(f"{s}: {v:.3f}" for s, v in pts))
  if dagger_round:
    lines += ["", "## NTP's DAgger round", "",
              f"At step {dagger_round['step']} the NTP model gazed its {dagger_round['clips']} labelled clips alone; "
              f"the labeller would have picked the model's own gaze at {dagger_round['labeller_agrees_with_model']:.0%} "
              f"of the states it reached, and its picks there were drawn as a clip's labels with probability "
              f"{cfgs['ntp'].dagger.share:g} for the rest of NTP."]
  lines += ["", "![grpo held-out](grpo_heldout.png)", "",
            f"Wall time per stage (s): {times}; total {report['total_wall_s']:.0f} s.", "",
            "Curves: [reconstructor](recon/curve.png), [NTP](ntp/curve.png), [GRPO](grpo/curve.png), "
            "[GRPO from untrained](grpo_untrained/curve.png); reconstructions: "
            "[recon/reconstructions.png](recon/reconstructions.png).", "",
            "Gazes of every policy on the first generated test clip:", ""]
  lines += [f"{LABELS[n]}:\n\n![{n}](gazes_{n}.png)\n" for n in LABELS]
  storage.write_text(os.path.join(workdir, "report.md"), "\n".join(lines) + "\n")
  return report


def pool(workdirs: list[str]) -> dict:
  """Several seeds' main jobs (one workdir each) side by side on their test clips: each seed's
  ratio to reach eps per policy and targets, the mean and spread over seeds, and the pooled
  (all seeds' clips) paired interval of NTP + GRPO - NTP."""
  runs = []
  for w in workdirs:
    path = os.path.join(w, "report.json")
    if not storage.exists(path):
      raise ValueError(f"main-job pool: {w} has no report.json (is its main job finished?)")
    runs.append(storage.read_json(path))
    if "test" not in runs[-1] or "generated" not in runs[-1]["test"]:
      raise ValueError(f"main-job pool: {path} has no test results (written by an older version?)")
  if len({tuple(sorted(r["test"]["generated"])) for r in runs}) != 1:
    raise ValueError("main-job pool: the runs compare different policies")
  eps = {r["eps"] for r in runs}
  if len(eps) != 1:
    raise ValueError(f"main-job pool: the runs used different eps {sorted(eps)}")
  seeds = [r["seeds"]["recon"] for r in runs]
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"main-job pool: two runs share a seed ({seeds})")
  rows = [r["test"]["generated"] for r in runs]
  per_seed = {p: [row[p]["ratio_at_eps"] for row in rows] for p in rows[0]}
  pooled = {p: np.concatenate([row[p]["per_clip_ratio"] for row in rows]) for p in rows[0]}
  return {
    "eps": eps.pop(), "seeds": seeds, "workdirs": list(workdirs),
    "test_ratio_at_eps_by_seed": per_seed,
    "test_ratio_at_eps_mean_over_seeds": {p: float(np.mean(v)) for p, v in per_seed.items()},
    "test_ratio_at_eps_std_over_seeds": {p: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
                                         for p, v in per_seed.items()},
    "test_targets_by_seed": [r["test_targets"] for r in runs],
    "test_pooled_grpo_minus_ntp": clip_stats.paired_difference(pooled["grpo"], pooled["ntp"]),
    "test_pooled_ntp_minus_random": clip_stats.paired_difference(pooled["ntp"], pooled["random"]),
  }


def pool_markdown(p: dict) -> str:
  names = list(p["test_ratio_at_eps_by_seed"])
  lines = ["| seed | " + " | ".join(LABELS[n] for n in names) + " | NTP / random | NTP recovers of oracle's saving |",
           "|---|" + "---|" * (len(names) + 2)]
  for i, seed in enumerate(p["seeds"]):
    t = p["test_targets_by_seed"][i]
    rec = t["ntp_recovers_of_oracle_saving"]
    lines.append(f"| {seed} | " + " | ".join(f"{p['test_ratio_at_eps_by_seed'][n][i]:.3f}" for n in names)
                 + f" | {t['ntp_over_random']:.2f} | {'n/a' if rec is None else f'{rec:.0%}'} |")
  lines.append("| mean ± sd | " + " | ".join(
    f"{p['test_ratio_at_eps_mean_over_seeds'][n]:.3f} ± {p['test_ratio_at_eps_std_over_seeds'][n]:.3f}"
    for n in names) + " | | |")
  d = p["test_pooled_grpo_minus_ntp"]
  lines += ["", f"Pooled over the seeds' {d['clips']} test clips, NTP + GRPO - NTP: {d['mean']:+.3f} "
            f"{_ci(d['ci95'])} (excludes 0: {'yes' if d['excludes_0'] else 'no'})."]
  return "\n".join(lines)
