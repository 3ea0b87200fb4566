"""What a training step costs: step times over the windows between syncs, the overheads of
log/checkpoint/eval steps, the compiled step's memory and FLOPs, and an XProf trace of chosen
steps, all without a per-step sync."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.train import loop, step_timing


def test_summary_by_kind_and_ratios():
  clock = step_timing.StepClock()
  clock.window(4, 40.0, first=True)  # compiles: kept apart
  for seconds in (10.0, 10.0, 30.0, 10.0):  # windows of 10 steps
    clock.window(10, seconds)
  clock.extra("log", 0.1)
  clock.extra("checkpoint", 2.0)
  for _ in range(10):
    clock.data(0.1)
  out = clock.summary()
  assert out["first_window"] == {"steps": 4, "seconds": 40.0}
  assert out["step"] == {"count": 4, "median_s": 1.0, "p90_s": pytest.approx(2.4), "max_s": 3.0}
  assert out["log"]["cost_over_step"] == pytest.approx(1.1) and out["checkpoint"]["cost_over_step"] == 3.0
  assert out["data_wait"]["fraction_of_time"] == pytest.approx(1.0 / 102.1)
  with pytest.raises(ValueError, match="step kind"):
    clock.extra("warmup", 1.0)
  assert step_timing.kind_of(True, True, True) == "eval"
  assert step_timing.kind_of(False, True, True) == "checkpoint"
  assert step_timing.kind_of(False, False, True) == "log"


def test_profile_spec_errors():
  assert step_timing.parse_profile("") is None and step_timing.parse_profile("3:5") == (3, 5)
  for bad in ("5", "a:b", "5:5", "-1:2"):
    with pytest.raises(ValueError, match="profile"):
      step_timing.parse_profile(bad)


def test_throughput_and_mfu():
  assert step_timing.throughput({}, 2.0, "cpu", 1) == {}
  out = step_timing.throughput({"flops_per_step": 1e12}, 2.0, "TPU v5 lite", 4)
  assert out["tflops_per_s"] == 2.0 and out["mfu"] == pytest.approx(2.0 / (197 * 4))
  assert "mfu" not in step_timing.throughput({"flops_per_step": 1e12}, 2.0, "cpu", 1)


def test_the_loop_times_steps_logs_throughput_and_traces(tmp_path):
  mesh = mesh_lib.make_mesh((8, 1))
  repl, rows = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh, 2)

  def step_fn(state, batch, key, frozen):
    w = state["w"] + batch["x"].sum() * 1e-3
    return {"w": w}, {"loss": jnp.sum(w)}

  jitted = jax.jit(step_fn, in_shardings=({"w": repl}, {"x": rows}, repl, repl), out_shardings=({"w": repl}, repl),
                   donate_argnums=0)
  stage = loop.Stage(step_fn=jitted, host_batch=lambda i: {"x": np.ones((8, 4), np.float32)},
                     put_batch=lambda x: {k: jax.device_put(v, rows) for k, v in x.items()}, tokens_per_step=32)
  with mesh_lib.use(mesh):
    state = loop.run(stage, jax.device_put({"w": jnp.zeros(3)}, {"w": repl}), workdir=str(tmp_path), steps=12, seed=0,
                     log_every=4, eval_every=100, checkpoint_every=6, progress=False, profile="3:5")
  np.testing.assert_allclose(np.asarray(state["w"]), 12 * 8 * 4 * 1e-3, rtol=1e-6)
  times = json.loads((tmp_path / "step_times.json").read_text())
  # syncs at steps 4, 6, 8, 12 (log 4, 8; checkpoint 6, 12): the first window (compiles) apart
  assert times["first_window"]["steps"] == 4 and times["step"]["count"] == 3
  assert times["log"]["overhead"]["count"] == 2 and times["checkpoint"]["overhead"]["count"] == 2
  assert times["checkpoint"]["cost_over_step"] >= 1.0
  assert times["compiled"]["argument_gib"] > 0 and times["compiled"]["flops_per_step"] > 0
  row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
  assert row["step"] == 4 and row["tokens_per_s"] == pytest.approx(32 * row["steps_per_s"])
  assert row["tflops_per_s"] > 0
  assert list((tmp_path / "profile").rglob("*.xplane.pb"))  # the XProf trace of steps 3..5
  report = loop.finish(str(tmp_path), {"steps": 12})
  assert report["step_times"]["step"]["count"] == 3
