"""`autogaze-jax evaluate`: reconstruction quality against gaze budget.

For every clip (the first frames of each video, squared to the reconstructor's size) and every
setting (a gaze ratio, or a task-loss threshold ε with the ratio as the per-frame cap), the gaze
model gazes, the reconstructor rebuilds every frame from those gazes, and each clip gets:
gazes per frame, L1 in the official (doubly normalised) space, PSNR and SSIM in 8-bit pixel
space (scikit-image), and the seconds it took. Written to OUT: eval.json (per clip and overall),
eval.md (the table), quality_vs_ratio.png (mean ± std over clips against the measured gaze
ratio) and examples.png (the first clip's reconstructions at every setting).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from autogaze_jax import image as image_lib
from autogaze_jax import storage
from autogaze_jax.cli import reconstruct
from autogaze_jax.models import recon_config


def settings(ratios: str | None, eps: str | None, cap: float) -> list[dict]:
  """[{"ratio": r, "eps": None}, ...] then [{"ratio": cap, "eps": e}, ...], checked."""
  if not 0 < cap <= 1:
    raise ValueError(f"--cap: {cap} is outside (0, 1]")
  out = []
  for text, key, flag in ((ratios, "ratio", "--ratios"), (eps, "eps", "--eps")):
    for item in (text or "").split(","):
      if not item.strip():
        continue
      try:
        value = float(item)
      except ValueError:
        raise ValueError(f"{flag}: {item!r} is not a number") from None
      if not np.isfinite(value):
        raise ValueError(f"{flag}: {value} is not finite")
      if key == "ratio" and not 0 < value <= 1:
        raise ValueError(f"--ratios: {value} is outside (0, 1]")
      out.append({"ratio": value, "eps": None} if key == "ratio" else {"ratio": cap, "eps": value})
  if not out:
    raise ValueError("evaluate: give --ratios and/or --eps")
  return out


PSNR_CAP = 100.0  # dB for identical frames (PSNR is infinite there; JSON has no infinity)


def pixel_quality(target_u8, pred_u8) -> tuple[float, float]:
  """Mean PSNR (each frame capped at PSNR_CAP) and SSIM over frames of uint8 (F, H, W, 3)."""
  from skimage.metrics import peak_signal_noise_ratio, structural_similarity

  psnr = [PSNR_CAP if np.array_equal(t, p) else min(PSNR_CAP, peak_signal_noise_ratio(t, p, data_range=255))
          for t, p in zip(target_u8, pred_u8)]
  ssim = [structural_similarity(t, p, data_range=255, channel_axis=-1) for t, p in zip(target_u8, pred_u8)]
  return float(np.mean(psnr)), float(np.mean(ssim))


def evaluate_clip(gazer, recon, clip_u8, setting: dict) -> tuple[dict, np.ndarray]:
  """One clip at one setting -> (its row, the reconstruction (T, 3, S, S))."""
  video = image_lib.normalize(clip_u8)[None]  # (1, T, 3, S, S) in the task space
  t0 = time.perf_counter()
  out = gazer.gaze(video, gazing_ratio=setting["ratio"], task_loss_requirement=setting["eps"], generate_only=True)
  t1 = time.perf_counter()
  frames = np.arange(video.shape[1], dtype=np.int32)
  rec = reconstruct.reconstruct(recon, video, out, frames)
  t2 = time.perf_counter()
  vocab = sum(recon_config.tokens_per_scale(recon.cfg))
  real = out["num_real_gazing_each_frame"][0]
  psnr, ssim = pixel_quality(clip_u8, image_lib.to_display_uint8(rec["reconstruction"][0]))
  row = {"gazes_per_frame": real.tolist(), "gaze_ratio": float(real.mean() / vocab),
         "l1": float(rec["loss_each_frame"][0].mean()), "psnr": psnr, "ssim": ssim,
         "seconds_gaze": t1 - t0, "seconds_reconstruct": t2 - t1}
  return row, rec["reconstruction"][0]


def summarise(rows: list[dict]) -> dict:
  keys = ("gaze_ratio", "l1", "psnr", "ssim", "seconds_gaze", "seconds_reconstruct")
  return {k: {"mean": float(np.mean([r[k] for r in rows])), "std": float(np.std([r[k] for r in rows]))} for k in keys}


def check_models(gazer, recon) -> None:
  """The gaze model and the reconstructor must share the multi-scale vocabulary."""
  mine, theirs = tuple(gazer.config.scales), tuple(recon.cfg.scales)
  if mine != theirs or gazer.config.num_vision_tokens_each_frame != sum(recon_config.tokens_per_scale(recon.cfg)):
    raise ValueError(f"evaluate: the gaze model's scales {mine} are not the reconstructor's {theirs}")


def run(gazer, recon, paths: list[str], clips: list, grid: list[dict], out_dir: str) -> dict:
  """Every clip (uint8 (T, S, S, 3) at the reconstructor's size, named by `paths`) at every
  setting; writes the files of the module docstring; returns what eval.json holds."""
  if not clips:
    raise ValueError("evaluate: no videos to evaluate")
  check_models(gazer, recon)
  size, num_frames = clips[0].shape[1], clips[0].shape[0]
  results, examples = [], []
  for setting in grid:
    rows = []
    for path, clip in zip(paths, clips):
      row, rec = evaluate_clip(gazer, recon, clip, setting)
      rows.append({"video": path, **row})
      if path == paths[0]:
        examples.append(rec)
    results.append({**setting, "overall": summarise(rows), "clips": rows})
    o = results[-1]["overall"]
    print(f"ratio {setting['ratio']}" + (f", eps {setting['eps']}" if setting["eps"] is not None else "")
          + f": gaze ratio {o['gaze_ratio']['mean']:.3f}, L1 {o['l1']['mean']:.4f}, "
          f"PSNR {o['psnr']['mean']:.2f} dB, SSIM {o['ssim']['mean']:.3f} over {len(rows)} clips")
  report = {"num_clips": len(paths), "num_frames": num_frames, "image_size": size, "settings": results}
  storage.makedirs(out_dir)
  storage.write_text(os.path.join(out_dir, "eval.json"), json.dumps(report, indent=2))
  storage.write_text(os.path.join(out_dir, "eval.md"), table(report))
  _plot(os.path.join(out_dir, "quality_vs_ratio.png"), results)
  _examples(os.path.join(out_dir, "examples.png"), clips[0], examples, grid)
  return report


def table(report: dict) -> str:
  lines = [f"{report['num_clips']} clips x {report['num_frames']} frames at {report['image_size']} px; "
           "mean ± std over clips", "",
           "| setting | gaze ratio | L1 (official space) | PSNR (dB) | SSIM | s / clip (gaze + recon) |",
           "|---|---|---|---|---|---|"]
  def pm(o, k, f):
    return f"{o[k]['mean']:{f}} ± {o[k]['std']:{f}}"

  for s in report["settings"]:
    o = s["overall"]
    name = f"ratio {s['ratio']}" + (f", ε {s['eps']}" if s["eps"] is not None else "")
    secs = o["seconds_gaze"]["mean"] + o["seconds_reconstruct"]["mean"]
    lines.append(f"| {name} | {pm(o, 'gaze_ratio', '.3f')} | {pm(o, 'l1', '.4f')} | {pm(o, 'psnr', '.2f')} | "
                 f"{pm(o, 'ssim', '.3f')} | {secs:.2f} |")
  return "\n".join(lines) + "\n"


def _plot(path: str, results: list[dict]) -> None:
  from autogaze_jax import pictures

  plt = pictures.plt
  fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), dpi=100)
  for ax, key, label in zip(axes, ("l1", "psnr", "ssim"), ("L1 (official space)", "PSNR (dB)", "SSIM")):
    for kind in ("ratio", "eps"):
      pts = [s for s in results if (s["eps"] is None) == (kind == "ratio")]
      if not pts:
        continue
      x = np.array([s["overall"]["gaze_ratio"]["mean"] for s in pts])
      m = np.array([s["overall"][key]["mean"] for s in pts])
      sd = np.array([s["overall"][key]["std"] for s in pts])
      order = np.argsort(x)
      ax.plot(x[order], m[order], "o-", label="fixed ratio" if kind == "ratio" else "ε stop")
      ax.fill_between(x[order], (m - sd)[order], (m + sd)[order], alpha=0.2)
    ax.set_xlabel("gaze ratio (measured)")
    ax.set_title(label, fontsize=9)
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  pictures.save(fig, path)


def _examples(path: str, clip_u8, recons: list, grid: list[dict], frames=(0, 5, 10, 15)) -> None:
  from autogaze_jax import pictures

  plt = pictures.plt
  frames = [f for f in frames if f < clip_u8.shape[0]]
  fig, axes = plt.subplots(1 + len(recons), len(frames), figsize=(2 * len(frames), 2 * (1 + len(recons))),
                           dpi=100, squeeze=False)
  rows = [clip_u8] + [image_lib.to_display_uint8(r) for r in recons]
  names = ["original"] + [f"ratio {s['ratio']}" + (f", ε {s['eps']}" if s["eps"] is not None else "") for s in grid]
  for i, (imgs, name) in enumerate(zip(rows, names)):
    for j, f in enumerate(frames):
      axes[i, j].imshow(imgs[f])
      axes[i, j].axis("off")
    axes[i, 0].set_title(name, fontsize=8, loc="left")
  fig.tight_layout()
  pictures.save(fig, path)
