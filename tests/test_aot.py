"""AOT compilation for a TPU topology on a CPU-only machine (libtpu's compiler), and the
loop-aware FLOP count that the roofline estimate rests on."""

import importlib.util
import os
import sys

import jax
import jax.numpy as jnp
import pytest

from autogaze_jax.cli import aot

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "launch"))

needs_libtpu = pytest.mark.skipif(
  importlib.util.find_spec("libtpu") is None,
  reason="libtpu is not installed (pip install 'libtpu==0.0.50.*'; .ci/run installs it)",
)


def test_flops_count_scan_trip_counts():
  w = jnp.ones((16, 16))

  def f(x):
    return jax.lax.scan(lambda c, _: (c @ w, None), x, None, length=8)[0]

  total, once = aot.matmul_flops(jax.make_jaxpr(f)(jnp.ones((4, 16))).jaxpr)
  assert once == 2 * 4 * 16 * 16 and total == 8 * once


def test_unknown_topology_is_a_clear_error():
  with pytest.raises(ValueError, match="CHIP:SHAPE"):
    aot.topology_devices("v9z:2x2")


@needs_libtpu
def test_ntp_step_compiles_for_a_tpu_topology(capsys):
  import aot_compile

  assert aot_compile.main(["--config", "configs/ntp.py:tiny", "--topology", "v5e:2x2",
                           "--config.batch_size=8"]) == 0
  out = capsys.readouterr().out
  assert "on v5e:2x2 (4 chips" in out
  fields = [c.strip() for c in out.strip().splitlines()[-1].strip("|").split("|")]
  row = dict(zip(aot_compile.HEADER, fields))
  assert row["step"] == "ntp" and row["mesh (data,fsdp)"] == "(4,1)" and row["fits"] == "yes"
  assert float(row["GFLOP/chip"]) > 0 and float(row["clips/s (slice)"]) > 0


@needs_libtpu
def test_multi_slice_mesh_keeps_fsdp_inside_a_slice_and_compiles(capsys):
  import aot_compile

  from autogaze_jax import mesh as mesh_lib

  devices = aot.topology_devices("v5e:2x2", num_slices=2)
  mesh = mesh_lib.make_mesh((-1, 2), devices=devices)
  assert dict(mesh.shape) == {"data": 4, "fsdp": 2}
  slice_of = [[d.slice_index for d in row] for row in mesh.devices]
  assert all(len(set(row)) == 1 for row in slice_of), "an fsdp group spans two slices"
  assert sorted({row[0] for row in slice_of}) == [0, 1]
  with pytest.raises(ValueError, match="multiple of the 2 slices"):
    mesh_lib.make_mesh((1, 8), devices=devices)
  assert aot_compile.main(["--config", "configs/ntp.py:tiny", "--topology", "v5e:2x2", "--num-slices", "2",
                           "--config.batch_size=8", "--config.mesh.shape=(-1,2)"]) == 0
  out = capsys.readouterr().out
  assert "on v5e:2x2 x 2 slices (8 chips" in out
  row = dict(zip(aot_compile.HEADER, [c.strip() for c in out.strip().splitlines()[-1].strip("|").split("|")]))
  assert row["mesh (data,fsdp)"] == "(4,2)" and row["fits"] == "yes"


@pytest.mark.parametrize("stage", ["recon", "ntp", "grpo"])
def test_every_stage_compiles_through_its_own_step_builder(stage):
  """`aot.train_step` takes each objective's `abstract_inputs` and `make_step` (the step its
  trainer runs) and the result compiles, here for this machine's devices."""
  from autogaze_jax import mesh as mesh_lib
  from autogaze_jax.cli import config_files

  cfg = config_files.load(os.path.join(ROOT, "configs", f"{stage}.py:tiny"))
  cfg.clip_len = 2  # the shapes only size the compile
  mesh = mesh_lib.make_mesh((2, 1), devices=jax.devices()[:2])
  step = aot.train_step(cfg, mesh)
  assert step.name == stage and step.clips == cfg.batch_size
  state, batch, key, frozen = step.args
  assert batch["video"].shape == (cfg.batch_size, 2, cfg.image_size, cfg.image_size, 3)
  compiled = step.fn.lower(*step.args).compile()
  assert compiled.memory_analysis().argument_size_in_bytes > 0
