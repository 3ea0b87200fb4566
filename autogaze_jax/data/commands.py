"""`autogaze-jax data build | check | bench`."""

from __future__ import annotations

import json


def cmd_build(args) -> None:
  from autogaze_jax.data import tfds_build

  report = tfds_build.build(args.src, args.out, args.clip_len, args.size, args.frame_sample_rate,
                            args.min_frames)
  print(json.dumps(report, indent=2))
  print(f"wrote TFDS dataset '{tfds_build.NAME}' to {args.out} (read it with --config.data.source=tfds "
        f"--config.data.root={args.out}); skipped files: {args.out}/skipped.jsonl")


def cmd_check(args) -> None:
  from autogaze_jax.data import check

  result = check.check(args.dir, args.clip_len, args.min_frames)
  print(check.format_report(result, args.dir))
  if not result["usable"]:
    raise ValueError(f"data check: no usable video under {args.dir}")


def cmd_bench(args) -> None:
  from autogaze_jax.data import bench

  workers = [int(w) for w in args.workers.split(",")]
  rows = bench.bench(args.src, workers, args.batches, args.batch_size, args.size, args.clip_len, args.threads)
  print(bench.format_table(rows))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=2)


def add_parser(sub) -> None:
  data = sub.add_parser("data", help="build, check and benchmark video datasets")
  dsub = data.add_subparsers(dest="data_command", required=True)

  def common(p):
    p.add_argument("--clip-len", type=int, default=16)
    p.add_argument("--min-frames", type=int, default=1, help="fewer decodable frames = unusable")

  b = dsub.add_parser("build", help="folder of videos (train/, val/) -> TFDS ArrayRecord clips; resumable")
  b.add_argument("src")
  b.add_argument("out")
  b.add_argument("--size", type=int, default=224)
  b.add_argument("--frame-sample-rate", type=int, default=1)
  common(b)
  b.set_defaults(func=cmd_build)

  c = dsub.add_parser("check", help="list usable and unusable videos with reasons")
  c.add_argument("dir")
  common(c)
  c.set_defaults(func=cmd_check)

  n = dsub.add_parser("bench", help="pipeline clips/s for several worker counts")
  n.add_argument("src", help="a video file, a folder, 'synthetic' or 'samples'")
  n.add_argument("--workers", default="0,1,2")
  n.add_argument("--batches", type=int, default=40)
  n.add_argument("--threads", type=int, default=1, help="decode threads per worker (or in-process)")
  n.add_argument("--batch-size", type=int, default=8)
  n.add_argument("--size", type=int, default=224)
  n.add_argument("--json", help="also write the rows to this file")
  common(n)
  n.set_defaults(func=cmd_bench)
