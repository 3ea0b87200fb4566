"""The work model of benchmarks/decode_floor.py against counts done by hand."""

import importlib.util
import pathlib

import pytest

from autogaze_jax.models import gaze_config

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "decode_floor.py"
_spec = importlib.util.spec_from_file_location("decode_floor", _PATH)
decode_floor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(decode_floor)


def test_work_of_one_and_two_frames_by_hand():
  cfg = gaze_config.tiny_config()  # P = 16, K = 3, d = 32, 2 layers, 4 heads / 2 kv of 8, mlp 64
  d, layers, heads, kv, hd, mlp, p, k = 32, 2, 4, 2, 8, 64, 16, 3
  per_token = 2 * layers * (2 * d * heads * hd + 2 * d * kv * hd + 3 * d * mlp)
  attn, kv_bytes = 4 * layers * heads * hd, 2 * layers * kv * hd * 4
  weights = 4 * (layers * (2 * d * (heads + kv) * hd + 3 * d * mlp) + (d + 1) * k * 21)
  fed = k + p
  one = decode_floor.decoder_work(cfg, [3], batch=1)  # one step: the prefill only
  assert one["flops"] == pytest.approx(fed * per_token + attn * fed * (fed + 1) / 2)
  assert one["bytes"] == pytest.approx(weights)
  # frame 0: 2 gazes (1 step); frame 1: 7 gazes (3 steps: prefill + 2 decode steps)
  two = decode_floor.decoder_work(cfg, [2, 7], batch=2)
  hist = p + 2
  f1 = fed * per_token + attn * (fed * hist + fed * (fed + 1) / 2)
  steps = [(k * per_token + attn * k * (hist + fed + s * k), kv_bytes * (hist + fed + s * k - k)) for s in (1, 2)]
  flops = one["flops"] + f1 + sum(f for f, _ in steps)
  reads = kv_bytes * hist + sum(r for _, r in steps)
  assert two["flops"] == pytest.approx(2 * flops)
  assert two["bytes"] == pytest.approx(2 * reads + 4 * weights)


def test_floor_is_the_slower_of_reading_and_computing():
  out = decode_floor.floor_seconds({"flops": 4e9, "bytes": 1e9}, bandwidth=1e9, rate=2e9)
  assert out == {"read_s": 1.0, "compute_s": 2.0, "floor_s": 2.0}
