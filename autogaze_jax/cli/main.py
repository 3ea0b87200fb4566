"""`autogaze-jax` command line: gaze, gaze-video, encode, reconstruct, evaluate, convert, demo,
train, label, main-job, data, ckpt.

Every user error (bad ratio, unreadable video, mismatched checkpoint, ...) ends with one
line `error: ...` on stderr and exit status 2; nothing already written is removed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import numpy as np

from autogaze_jax.cli import config_files


def _parse_ratio(text: str | None):
  if text is None:
    return None
  try:
    vals = [float(x) for x in text.split(",")]
  except ValueError:
    raise ValueError(f"--gazing-ratio: {text!r} is not a number or a comma-separated list") from None
  return vals[0] if len(vals) == 1 else vals


def _trainers() -> dict:
  """config.stage -> that objective's `train(cfg, workdir) -> report`."""
  from autogaze_jax.train.grpo import trainer as grpo_trainer
  from autogaze_jax.train.ntp import trainer as ntp_trainer
  from autogaze_jax.train.recon import trainer as recon_trainer

  return {"recon": recon_trainer.train, "ntp": ntp_trainer.train, "grpo": grpo_trainer.train}


def cmd_train(args, overrides) -> None:
  cfg = config_files.apply_overrides(config_files.load(args.config), overrides)
  if args.profile:
    from autogaze_jax.train import step_timing

    step_timing.parse_profile(args.profile)  # a bad spec fails before any work
    cfg.profile_steps = args.profile
  trainers = _trainers()
  if cfg.get("stage") not in trainers:
    raise ValueError(f"config.stage: {cfg.get('stage')!r} is not one of {', '.join(trainers)}")
  print(json.dumps(trainers[cfg.stage](cfg, args.workdir), indent=2))
  made = "reconstructions.png, recon_final/" if cfg.stage == "recon" else "gaze_final/"
  print(f"wrote {args.workdir}/metrics.jsonl, curve.png, report.json, ckpt/, {made}")


def cmd_main_job(args) -> None:
  """The main job: every stage on the embedded default, then a report."""
  from autogaze_jax.train import main_job, main_job_report

  if args.pool:
    pooled = main_job_report.pool(args.pool)
    print(main_job_report.pool_markdown(pooled))
    print(json.dumps(pooled, indent=2))
    return
  report = main_job.run(args.workdir, config_files.main_job_configs(args.configs, args.workdir, args.seed))
  print("\n".join(main_job_report.table(report["test"]["generated"], report["eps"])))
  print(json.dumps({"eps": report["eps"], "test_targets": report["test_targets"],
                    "total_wall_s": report["total_wall_s"]}, indent=2))
  print(f"wrote {args.workdir}/report.md, report.json, heldout_curves.json, loss_vs_ratio.png, grpo_heldout.png, "
        "gazes_*.png and one folder per stage")


def _load_model(args):
  from autogaze_jax import AutoGaze

  if args.checkpoint:
    return AutoGaze.from_pretrained(args.checkpoint)
  cfg = config_files.load(args.config) if args.config else None
  print("note: no --checkpoint; using randomly initialised weights (seed 0)", file=sys.stderr)
  return AutoGaze.from_config(cfg, seed=0)


def _load_video(path: str, num_frames: int, start: int):
  """Returns (preprocessed float video (1, T, 3, H, W), uint8 frames for pictures or None)."""
  from autogaze_jax import image as image_lib
  from autogaze_jax import video as video_lib

  if path.endswith(".npz"):
    if num_frames is not None or start is not None:
      raise ValueError("--num-frames/--start: an .npz input is used whole (they only select frames of a video file)")
    if not os.path.isfile(path):
      raise ValueError(f"--video: {path} does not exist")
    with np.load(path) as data:
      if "video" not in data:
        raise ValueError(f"--video: {path} has no key 'video' (keys: {sorted(data.keys())})")
      video = np.asarray(data["video"], np.float32)
      raw = np.asarray(data["raw_frames"]) if "raw_frames" in data else None
    if video.ndim == 4:
      video = video[None]
    return video, raw
  frames = video_lib.read_frames(path, 16 if num_frames is None else num_frames, start or 0)
  return image_lib.preprocess(frames)[None], frames


def cmd_gaze(args) -> None:
  from autogaze_jax import image as image_lib
  from autogaze_jax import pictures

  model = _load_model(args)
  video, raw = _load_video(args.video, args.num_frames, args.start)
  call = functools.partial(
    model.gaze, video, gazing_ratio=_parse_ratio(args.gazing_ratio),
    task_loss_requirement=args.task_loss_requirement, lockstep=args.lockstep,
    generate_only=args.generate_only,
  )
  timed = "incl. compile"
  if args.profile:  # compile first, then trace one compiled call
    import jax

    call()
    with jax.profiler.trace(args.profile):
      t0 = time.perf_counter()
      out = call()
      dt = time.perf_counter() - t0
    timed = f"compiled; XProf trace in {args.profile}"
  else:
    t0 = time.perf_counter()
    out = call()
    dt = time.perf_counter() - t0
  real = out["num_real_gazing_each_frame"][0]
  print(f"gazed {video.shape[1]} frames in {dt:.2f} s ({timed}): {int(real.sum())} gazes, "
        f"{real.mean() / model.config.num_vision_tokens_each_frame:.1%} of patches; per frame {real.tolist()}")
  if args.out:
    save = {k: v for k, v in out.items() if isinstance(v, np.ndarray)}
    for s, m in enumerate(out["gazing_mask"]):
      save[f"gazing_mask_s{s}"] = m
    np.savez_compressed(args.out, **save)
    print(f"wrote {args.out}")
  if args.viz:
    frames = raw if raw is not None else image_lib.to_display_uint8(video[0])
    pictures.save_gaze_picture(args.viz, frames, out)
    print(f"wrote {args.viz}")


def _load_reconstructor(path: str, mesh, flag: str = "--checkpoint"):
  """Our stage-0 training directory, or an official-layout directory (config.json +
  model.safetensors / videomae.pt); `flag` names the argument in errors."""
  from autogaze_jax import storage
  from autogaze_jax.train import oracle
  from autogaze_jax.weights import recon as recon_weights

  cfg_path = os.path.join(path, "config.json")
  if storage.exists(cfg_path) and storage.read_json(cfg_path).get("stage") == "recon":
    return oracle.from_stage0(path, mesh)
  if not os.path.isdir(path):
    raise ValueError(f"{flag}: {path} is not a directory (a stage-0 workdir or an official-layout folder)")
  return recon_weights.load_dir(path, mesh)


def _load_task_video(path: str, num_frames, start, size: int):
  """The reconstructor's input (1, T, 3, S, S): an .npz's key `video` as it is, or a video
  file's frames squared as the data pipeline does (shortest edge resized, centre crop) and
  normalised."""
  from autogaze_jax import image as image_lib
  from autogaze_jax import video as video_lib
  from autogaze_jax.data import transforms

  if path.endswith(".npz"):
    return _load_video(path, num_frames, start)[0]
  frames = video_lib.read_frames(path, 16 if num_frames is None else num_frames, start or 0)
  return image_lib.normalize(transforms.to_square(frames, size))[None]


def cmd_reconstruct(args) -> None:
  import jax

  from autogaze_jax import mesh as mesh_lib
  from autogaze_jax import pictures
  from autogaze_jax.cli import reconstruct
  from autogaze_jax.models import recon_config

  model = _load_reconstructor(args.checkpoint, mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1]))
  video = _load_task_video(args.video, args.num_frames, args.start, max(model.cfg.scales))
  frames = reconstruct.parse_frames(args.frames, video.shape[1])
  t0 = time.perf_counter()
  out = reconstruct.reconstruct(model, video, reconstruct.read_gazes(args.gazes), frames)
  losses = out["loss_each_frame"][0]
  print(f"reconstructed frames {frames.tolist()} in {time.perf_counter() - t0:.2f} s (incl. compile): "
        f"loss {losses.mean():.4f} (per frame {np.round(losses, 4).tolist()})")
  np.savez_compressed(args.out, reconstruction=out["reconstruction"], loss_each_frame=out["loss_each_frame"],
                      frame_idx=out["frame_idx"])
  print(f"wrote {args.out}")
  if args.viz:
    vocab = sum(recon_config.tokens_per_scale(model.cfg))
    img = reconstruct.picture(video[0], out["ids"][0], frames, out["reconstruction"][0], losses, model.cfg.scales, vocab)
    pictures.save_picture(args.viz, img)
    print(f"wrote {args.viz}")


def cmd_evaluate(args) -> None:
  import jax

  from autogaze_jax import mesh as mesh_lib
  from autogaze_jax import video as video_lib
  from autogaze_jax.cli import evaluate
  from autogaze_jax.data import sources, transforms

  grid = evaluate.settings(args.ratios, args.eps, args.cap)
  recon = _load_reconstructor(args.recon_checkpoint, mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1]),
                              "--recon-checkpoint")
  gazer = _load_model(args)
  evaluate.check_models(gazer, recon)
  paths = sources.bundled_sample_videos() if args.videos == "samples" else video_lib.list_videos(args.videos)
  paths = paths[: args.max_clips] if args.max_clips else paths
  size = max(recon.cfg.scales)
  clips = [transforms.to_square(video_lib.read_clip(p, args.num_frames), size) for p in paths]
  evaluate.run(gazer, recon, paths, clips, grid, args.out)
  print(f"wrote {args.out}/eval.json, eval.md, quality_vs_ratio.png, examples.png")


def cmd_gaze_video(args) -> None:
  """Any resolution and length: 16x224x224 tiles, bounded memory, masks in video coordinates."""
  from autogaze_jax import video as video_lib
  from autogaze_jax.inference import long_video

  model = _load_model(args)
  chunks = video_lib.read_chunks(args.video, 16, args.max_frames)
  out = long_video.gaze_long_video(model, chunks, _parse_ratio(args.gazing_ratio) or 0.1,
                                   args.task_loss_requirement, args.tiles_per_batch)
  frames = len(out["gazes_per_frame"])
  print(f"gazed {frames} frames as {out['num_tiles']} tiles in {out['total_seconds']:.1f} s "
        f"({out['num_tiles'] / max(out['gaze_seconds'], 1e-9):.2f} tiles/s in the decoder); "
        f"{out['gazes_per_frame'].mean():.1f} gazes per frame")
  if args.out:
    np.savez_compressed(args.out, gazes_per_frame=out["gazes_per_frame"],
                        **{f"mask_scale{s}": m for s, m in out["masks"].items()})
    print(f"wrote {args.out}")


def cmd_encode(args) -> None:
  """Video -> 16-frame tiles -> gazes -> gazed-ViT features of the gazed patches only."""
  from autogaze_jax import video as video_lib
  from autogaze_jax.inference import encode
  from autogaze_jax.models import vit_config

  gazer = _load_model(args)
  cfg = config_files.load(args.vit_config) if args.vit_config else vit_config.vit_config("base16_224")
  if not args.vit:
    print("note: no --vit; using randomly initialised ViT weights (seed 0)", file=sys.stderr)
  encoder = encode.GazedEncoder(encode.load_vit(cfg, args.vit, mesh=gazer.mesh))
  chunks = video_lib.read_chunks(args.video, args.tile_frames, args.max_frames)
  out = encode.encode_video(gazer, encoder, chunks, _parse_ratio(args.gazing_ratio),
                            args.task_loss_requirement, args.tiles_per_batch, args.tile_frames)
  slots = len(out["tile_origins"]) * args.tile_frames * out["tokens_per_tile_frame"]
  print(f"encoded {out['num_frames']} frames as {len(out['tile_origins'])} tiles: "
        f"{len(out['features'])} gazed tokens ({len(out['features']) / slots:.1%} of the multi-scale "
        f"patches), gazing {out['gaze_seconds']:.1f} s, ViT {out['vit_seconds']:.1f} s")
  np.savez_compressed(args.out, **{k: v for k, v in out.items() if not k.endswith("seconds")})
  print(f"wrote {args.out}")


def cmd_label(args, overrides) -> None:
  """Greedy NTP labels of the config's clips (config.data) with a stage-0 reconstructor."""
  from autogaze_jax.train import labelling

  cfg = config_files.apply_overrides(config_files.load(args.config), overrides)
  if args.num_clips is not None:
    cfg.label.num_clips = args.num_clips
  if args.recon_checkpoint:
    cfg.oracle.workdir = args.recon_checkpoint
  print(json.dumps(labelling.run(cfg, args.out), indent=2))


def cmd_ckpt(args) -> None:
  from autogaze_jax import checkpointing

  info = checkpointing.info(args.dir)
  step = "" if info["step"] is None else f"step {info['step']}  "
  print(f"{info['kind']}  {step}params {info['num_params']:,}  sha256 {info['sha256']}")


def cmd_convert(args) -> None:
  from autogaze_jax import AutoGaze

  model = AutoGaze.from_pretrained(args.src)
  model.save(args.out)
  print(f"wrote Orbax checkpoint {args.out}")


def cmd_demo(args) -> None:
  """The embedded default: a generated clip, gazed by the released architecture."""
  from autogaze_jax import AutoGaze, pictures
  from autogaze_jax import image as image_lib
  from autogaze_jax import video as video_lib
  from autogaze_jax.data import synthetic

  os.makedirs(args.out, exist_ok=True)
  clip = synthetic.make_clip(16, 448, seed=0)
  mp4 = os.path.join(args.out, "sample.mp4")
  video_lib.write_video(mp4, clip)
  frames = video_lib.read_frames(mp4, 16)
  video = image_lib.preprocess(frames)[None]
  model = AutoGaze.from_pretrained(args.checkpoint) if args.checkpoint else AutoGaze.from_config(seed=0)
  summary = {"checkpoint": args.checkpoint or "random init (seed 0), released architecture"}
  for ratio in (0.1, 0.75):
    t0 = time.perf_counter()
    out = model.gaze(video, gazing_ratio=ratio)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = model.gaze(video, gazing_ratio=ratio)
    again = time.perf_counter() - t0
    tag = f"r{int(round(ratio * 100)):03d}"
    save = {k: v for k, v in out.items() if isinstance(v, np.ndarray)}
    np.savez_compressed(os.path.join(args.out, f"gazes_{tag}.npz"), **save)
    pictures.save_gaze_picture(os.path.join(args.out, f"gazes_{tag}.png"), frames, out)
    summary[tag] = {
      "gazing_ratio": ratio, "gazes": int(out["num_real_gazing_each_frame"].sum()),
      "seconds_first_call": round(first, 2), "seconds_compiled": round(again, 2),
    }
    print(f"{tag}: {summary[tag]['gazes']} gazes over 16 frames; {again:.2f} s per clip "
          f"(first call {first:.2f} s incl. compile)")
  with open(os.path.join(args.out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  print(f"wrote {args.out}/sample.mp4, gazes_r010/r075 .npz and .png, summary.json")


def build_parser() -> argparse.ArgumentParser:
  from autogaze_jax import distributed

  p = argparse.ArgumentParser(prog="autogaze-jax", description=__doc__.splitlines()[0])
  sub = p.add_subparsers(dest="command", required=True)

  g = sub.add_parser("gaze", help="gaze a video file or a preprocessed .npz")
  g.add_argument("--checkpoint", help="official model dir / model.safetensors, or our checkpoint")
  g.add_argument("--config", help="configs/gaze.py[:variant] for random init (no checkpoint)")
  g.add_argument("--video", required=True, help="video file, or .npz with key 'video' (B,T,3,H,W)")
  g.add_argument("--gazing-ratio", help="one ratio in (0, 1], or one per frame, comma-separated")
  g.add_argument("--task-loss-requirement", type=float, help="stop a frame once predicted loss <= this")
  mode = g.add_mutually_exclusive_group()
  mode.add_argument("--batch-invariant", dest="lockstep", action="store_false", default=False)
  mode.add_argument("--lockstep", dest="lockstep", action="store_true", help="official batch coupling")
  g.add_argument("--num-frames", type=int, help="frames to read from a video file (default 16)")
  g.add_argument("--start", type=int, help="first frame to read from a video file (default 0)")
  g.add_argument("--generate-only", action="store_true", help="skip the teacher-forced log-probs")
  g.add_argument("--out", help="write the outputs to this .npz")
  g.add_argument("--viz", help="write a picture of the gazes to this .png")
  g.add_argument("--profile", metavar="DIR", help="gaze once to compile, then write an XProf trace "
                 "(jax.profiler) of a second, compiled call to DIR")
  distributed.add_flags(g)
  g.set_defaults(func=cmd_gaze)

  v = sub.add_parser("gaze-video", help="gaze a video of any resolution and length (tiles)")
  v.add_argument("--checkpoint")
  v.add_argument("--config", help="configs/gaze.py[:variant] for random init (no checkpoint)")
  v.add_argument("--video", required=True)
  v.add_argument("--gazing-ratio", help="one ratio in (0, 1], or 16 per-frame values")
  v.add_argument("--task-loss-requirement", type=float)
  v.add_argument("--tiles-per-batch", type=int, default=16)
  v.add_argument("--max-frames", type=int, help="stop after this many frames")
  v.add_argument("--out", help="per-scale masks in video coordinates (.npz)")
  v.set_defaults(func=cmd_gaze_video)

  r = sub.add_parser("reconstruct", help="rebuild frames of a video from given gazes with a reconstructor")
  r.add_argument("--checkpoint", required=True,
                 help="stage-0 workdir, or an official folder: config.json + model.safetensors / videomae.pt")
  r.add_argument("--video", required=True, help="video file, or .npz with key 'video' (the task video, preprocessed)")
  r.add_argument("--gazes", required=True, help=".npz with gazing_pos, if_padded_gazing, num_gazing_each_frame")
  r.add_argument("--frames", default="all", help="'all' or comma-separated frame indices (output in this order)")
  r.add_argument("--num-frames", type=int, help="frames to read from a video file (default 16)")
  r.add_argument("--start", type=int, help="first frame to read from a video file (default 0)")
  r.add_argument("--out", required=True, help="reconstruction (B, F, 3, S, S) and loss_each_frame (B, F) (.npz)")
  r.add_argument("--viz", help="a picture: the frames, their gazed patches per scale, the reconstructions (.png)")
  r.set_defaults(func=cmd_reconstruct)

  q = sub.add_parser("evaluate", help="reconstruction quality (L1, PSNR, SSIM) against gaze budget over clips")
  q.add_argument("--checkpoint", help="gaze model: official dir / model.safetensors, our checkpoint, or a hub id")
  q.add_argument("--config", help="configs/gaze.py[:variant] for a random gaze model (no checkpoint)")
  q.add_argument("--recon-checkpoint", required=True,
                 help="stage-0 workdir, or an official folder: config.json + model.safetensors / videomae.pt")
  q.add_argument("--videos", default="samples", help="a folder of videos, or 'samples' (the embedded sample clips)")
  q.add_argument("--ratios", default="0.05,0.1,0.2,0.5", help="gaze ratios to sweep, comma-separated")
  q.add_argument("--eps", help="task-loss thresholds to sweep (the gaze ratio --cap is then the per-frame cap)")
  q.add_argument("--cap", type=float, default=0.75, help="per-frame cap of the ε settings")
  q.add_argument("--num-frames", type=int, default=16)
  q.add_argument("--max-clips", type=int, help="evaluate only the first N videos")
  q.add_argument("--out", required=True, help="folder for eval.json, eval.md and the pictures")
  q.set_defaults(func=cmd_evaluate)

  e = sub.add_parser("encode", help="ViT features of the gazed patches of a video (tiles of any size)")
  e.add_argument("--checkpoint", help="gaze model (official dir / model.safetensors, or our checkpoint)")
  e.add_argument("--config", help="configs/gaze.py[:variant] for a random gaze model (no checkpoint)")
  e.add_argument("--vit", help="HF SigLIP/SigLIP2 vision model.safetensors (random init if omitted)")
  e.add_argument("--vit-config", help="configs/vit.py[:variant] (default: base16_224)")
  e.add_argument("--video", required=True)
  e.add_argument("--gazing-ratio", help="one ratio in (0, 1], or 16 per-frame values")
  e.add_argument("--task-loss-requirement", type=float)
  e.add_argument("--tiles-per-batch", type=int, default=4)
  e.add_argument("--tile-frames", type=int, default=16, help="frames per tile (the gaze model's clip length)")
  e.add_argument("--max-frames", type=int, help="stop after this many frames")
  e.add_argument("--out", required=True, help="features and token coordinates (.npz)")
  e.set_defaults(func=cmd_encode)

  c = sub.add_parser("convert", help="official safetensors -> Orbax checkpoint")
  c.add_argument("--from", dest="src", required=True)
  c.add_argument("--out", required=True)
  c.set_defaults(func=cmd_convert)

  d = sub.add_parser("demo", help="gaze a generated sample clip (the embedded default)")
  d.add_argument("--out", default="runs/demo")
  d.add_argument("--checkpoint")
  d.set_defaults(func=cmd_demo)

  lb = sub.add_parser("label", help="greedy NTP labels (gazing_labels.json) with a stage-0 reconstructor")
  lb.add_argument("--config", required=True, help="configs/ntp.py[:tiny|small|official] (its label.* fields)")
  lb.add_argument("--recon-checkpoint", default=None,
                  help="stage-0 workdir (autogaze-jax train configs/recon.py); sets --config.oracle.workdir")
  lb.add_argument("--out", required=True, help="labels file to write (official gazing_labels.json format; .array_record: one record per clip)")
  lb.add_argument("--num-clips", type=int, help="clips of config.data to label (default: config label.num_clips)")
  lb.set_defaults(func=cmd_label)

  t = sub.add_parser("train", help="train a stage from a config (recon, ntp or grpo)")
  t.add_argument("--config", required=True, help="configs/{recon,ntp,grpo}.py[:variant]")
  t.add_argument("--workdir", required=True, help="checkpoints, metrics and pictures; resumes if present")
  t.add_argument("--profile", default="", metavar="START:STOP",
                 help="write an XProf trace (jax.profiler) of steps START..STOP to <workdir>/profile")
  distributed.add_flags(t)
  t.set_defaults(func=cmd_train)

  e = sub.add_parser("main-job", help="the main job: stage 0 -> labels -> NTP -> GRPO -> eval -> report (CPU, tiny)")
  e.add_argument("--workdir", default="runs/main_job", help="every stage's output; rerun to resume")
  e.add_argument("--configs", default="configs", help="the folder of configs/*.py")
  e.add_argument("--seed", type=int, default=0, help="every stage's seed (init, data order, held-out clips)")
  e.add_argument("--pool", nargs="+", metavar="WORKDIR", default=None,
                 help="run nothing (--workdir and --seed are not used): compare finished main jobs of "
                      "different seeds (their test tables, pooled intervals)")
  e.set_defaults(func=cmd_main_job)

  k = sub.add_parser("ckpt", help="inspect checkpoints")
  k.add_argument("action", choices=["info"])
  k.add_argument("dir", help="a training workdir (with ckpt/) or a saved model directory")
  k.set_defaults(func=cmd_ckpt)

  from autogaze_jax.cli import data as data_cli

  data_cli.add_parser(sub)
  return p


def main(argv=None) -> int:
  from absl import flags

  if not flags.FLAGS.is_parsed():  # Grain's worker processes read absl flags
    flags.FLAGS(sys.argv[:1], known_only=True)
  args, extra = build_parser().parse_known_args(argv)
  takes_overrides = args.command in ("train", "label")
  if extra and not takes_overrides:
    print(f"error: unrecognised arguments: {' '.join(extra)}", file=sys.stderr)
    return 2
  if getattr(args, "num_frames", None) is not None and args.num_frames < 1:
    print("error: --num-frames must be >= 1", file=sys.stderr)
    return 2
  from autogaze_jax.train.loop import Preempted

  try:
    from autogaze_jax import distributed

    distributed.initialize(distributed.settings_from_args(args))  # before any backend use
    args.func(args, extra) if takes_overrides else args.func(args)
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except Preempted as e:
    print(f"preempted: {e}", file=sys.stderr)
    return 75  # EX_TEMPFAIL: try again later
  return 0


if __name__ == "__main__":
  sys.exit(main())
