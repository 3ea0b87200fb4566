"""`ckpt info`: the parameter digest depends on the values only, not on the mesh that saved them."""

import jax
import jax.numpy as jnp
import numpy as np

from autogaze_jax import checkpointing
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.cli import main as cli_main


def _save(workdir, state, step=3):
  ckpt = checkpointing.TrainCheckpoints(str(workdir), interval=1, async_save=False)
  ckpt.save(step, state, force=True)
  ckpt.close()


def test_digest_is_independent_of_the_mesh_and_sees_every_change(tmp_path, capsys):
  w = np.arange(64, dtype=np.float32).reshape(8, 8)
  state = {"model": {"w": jnp.asarray(w), "b": jnp.ones(8)}, "opt": {"mu": jnp.zeros(8)}}
  _save(tmp_path / "one", state)
  mesh = mesh_lib.make_mesh((4, 2))
  sharded = jax.tree.map(lambda x: jax.device_put(x, mesh_lib.batch_sharding(mesh, x.ndim)), state)
  _save(tmp_path / "eight", sharded)
  changed = {**state, "model": {**state["model"], "w": state["model"]["w"].at[3, 3].add(1e-6)}}
  _save(tmp_path / "changed", changed)
  a, b, c = (checkpointing.info(str(tmp_path / d)) for d in ("one", "eight", "changed"))
  assert a["step"] == 3 and a["num_params"] == 72 and a["kind"] == "training"
  assert a["sha256"] == b["sha256"] != c["sha256"]
  assert cli_main.main(["ckpt", "info", str(tmp_path / "one")]) == 0
  assert a["sha256"] in capsys.readouterr().out
  assert cli_main.main(["ckpt", "info", str(tmp_path)]) == 2
  assert "neither a training workdir" in capsys.readouterr().err
