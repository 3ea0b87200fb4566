"""NTP: the loss against a direct computation in the official layout, learning, sharded and
accumulated steps equal the plain step, the non-finite guard."""

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.data import labels, synthetic
from autogaze_jax.models import gaze_config, scoring
from autogaze_jax.models.gaze import GazeModel
from autogaze_jax.train import loop, optim
from autogaze_jax.train import state as state_lib
from autogaze_jax.train.ntp import step as ntp_step

V, K = 20, 3


def random_labels(seed, clips, frames, max_len=5, fixed_len=None):
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(clips):
    lens = [fixed_len or int(rng.integers(1, max_len + 1)) for _ in range(frames)]
    pos = [(rng.permutation(V)[:n] + t * V).tolist() for t, n in enumerate(lens)]
    losses = [np.sort(rng.uniform(0.3, 1.5, n))[::-1].tolist() for n in lens]
    out.append({"gazing_pos": pos, "task_losses": losses})
  return out


def official_collate(entries, frames):
  """The official collate (docs/design.md, "NTP") literally: per frame L_t = batch max, L_t + 1 slots, -1 pads, losses padded with the last."""
  pos, pad, tl = [], [], []
  n_t = [max(len(e["gazing_pos"][t]) for e in entries) + 1 for t in range(frames)]
  for e in entries:
    p, q, w = [], [], []
    for t in range(frames):
      g, l = e["gazing_pos"][t], e["task_losses"][t]
      extra = n_t[t] - len(g)
      p += g + [-1] * extra
      q += [False] * len(g) + [True] * extra
      w += l + [l[-1]] * extra
    pos.append(p), pad.append(q), tl.append(w)
  return np.array(pos), np.array(pad), np.array(n_t), np.array(tl, np.float32)


def test_loss_equals_direct_official_computation(tiny, tiny_video):
  video = tiny_video[:2, :2]
  entries = random_labels(1, 2, 2)
  pos, pad, n_t, tl = official_collate(entries, 2)
  out = tiny.gaze(video, gazing_info={"gazing_pos": pos, "if_padded_gazing": pad, "num_gazing_each_frame": n_t})
  assert out["log_action_probs"].shape == pos.shape
  m = ~pad
  denom = m.sum() / m.shape[0] + 1e-6
  ntp_b = -(out["log_action_probs"] * m).sum(1) / denom
  tlp_b = ((out["task_loss_prediction"] - tl) ** 2 * m).sum(1) / denom
  want = (ntp_b + tlp_b).mean()

  batch = labels.collate(entries, V, labels.slot_cap(dict(enumerate(entries)), K))
  batch["video"] = video
  with jax.default_matmul_precision("highest"):
    got, aux = ntp_step.loss(tiny.model, batch)
    only_ntp, _ = ntp_step.loss(tiny.model, batch, optimize_tlp=False)
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  np.testing.assert_allclose(float(only_ntp), ntp_b.mean(), rtol=1e-5)
  np.testing.assert_allclose(float(aux["task_loss_prediction_loss"]), tlp_b.mean(), rtol=1e-5)
  assert float(aux["real_slots_per_clip"]) == m.sum() / 2  # the "+1 EOS" slots are not targets


def step_cfg(accum=1, batch=2):
  """The fields of an NTP config that its step reads."""
  return ml_collections.ConfigDict(dict(batch_size=batch, micro_batch_size=batch // accum if accum > 1 else 0,
                                        loss=dict(tlp_weight=1.0, optimize_task_loss_prediction=True)))


def opt_cfg(lr=1e-2, schedule="constant", name="adam"):
  return ml_collections.ConfigDict(dict(name=name, lr=lr, schedule=schedule, grad_clip=0.0, **({"min_lr": 1e-5} if schedule == "linear" else {})))


@pytest.fixture(scope="module")
def sgd_state():
  """One SGD state made on a (4, 2) mesh, plus its shardings on one device (one init compile)."""
  mesh8 = mesh_lib.make_mesh((4, 2))
  mesh1 = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  graphdef, st, sh8 = state_lib.create(lambda: GazeModel(gaze_config.tiny_config(), nnx.Rngs(0)),
                                       optim.make(opt_cfg(0.05, name="sgd"), 100), mesh8)
  sh1 = jax.tree.map(lambda s: jax.sharding.NamedSharding(mesh1, s.spec), sh8)
  host = jax.device_get(st)
  steps = {}

  def fresh(mesh, accum=1):
    """(state, jitted step, batch shardings) on `mesh`; steps are compiled once per setting."""
    sh = sh8 if mesh is mesh8 else sh1
    if (id(mesh), accum) not in steps:
      steps[id(mesh), accum] = ntp_step.make_step(graphdef, sh, mesh, step_cfg(accum))
    step, batch_sh = steps[id(mesh), accum]
    return jax.device_put(host, sh), step, batch_sh

  return fresh, mesh1, mesh8


def make_batch(entries, frames):
  clips = np.stack([synthetic.make_clip(frames, 64, seed=i) for i in range(len(entries))])
  return ntp_step.host_arrays(clips, labels.collate(entries, V, 6))


def put(batch, batch_sh):
  return {k: jax.device_put(v, batch_sh[k]) for k, v in batch.items()}


def params_of(st):
  return [np.asarray(x) for x in jax.tree.leaves(st["model"])]


def test_steps_reduce_the_loss(sgd_state):
  fresh, mesh1, _ = sgd_state
  st, step, batch_sh = fresh(mesh1)
  batch = put(make_batch(random_labels(2, 8, 2, fixed_len=4), 2), batch_sh)
  losses = []
  for _ in range(12):
    st, m = step(st, batch, jax.random.key(0), ())
    loop.check_finite(jax.device_get(m), 1, None)
    losses.append(float(m["loss"]))
  assert losses[-1] < 0.8 * losses[0], losses


def test_sharded_and_accumulated_steps_equal_single_device(sgd_state):
  fresh, mesh1, mesh8 = sgd_state
  batch = make_batch(random_labels(3, 8, 2, fixed_len=4), 2)  # equal lengths: equal denominators
  results = []
  for mesh, accum in ((mesh1, 1), (mesh8, 1), (mesh1, 2)):
    st, step, batch_sh = fresh(mesh, accum)
    with mesh_lib.use(mesh):
      st, m = step(st, put(batch, batch_sh), jax.random.key(0), ())
    results.append((params_of(st), float(m["loss"])))
  for params, value in results[1:]:
    np.testing.assert_allclose(value, results[0][1], rtol=1e-5)
    for a, b in zip(params, results[0][0]):  # SGD: params move by lr * grad
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_nonfinite_labels_skip_the_update_and_are_named(sgd_state):
  fresh, mesh1, _ = sgd_state
  st, step, batch_sh = fresh(mesh1)
  before = params_of(st)
  batch = make_batch(random_labels(4, 8, 2, fixed_len=4), 2)
  batch["task_losses"][0, 0, 0] = np.nan
  st, m = step(st, put(batch, batch_sh), jax.random.key(0), ())
  for a, b in zip(params_of(st), before):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(FloatingPointError, match="step 7: non-finite .*task_losses=nan/inf"):
    loop.check_finite(jax.device_get(m), 7, None)  # the training loop's one check, on log steps


def test_optimizer_linear_schedule_and_errors():
  tx = optim.make(opt_cfg(0.5, "linear", name="sgd"), 10)  # lr 0.5 -> min_lr over 10 steps
  grads = {"w": np.ones((), np.float32)}
  opt = tx.init(grads)
  steps = []
  for _ in range(12):
    u, opt = tx.update(grads, opt)
    steps.append(-float(u["w"]))
  np.testing.assert_allclose(steps[0], 0.5)  # no warmup: the first update is a full step
  np.testing.assert_allclose(steps[10:], [1e-5, 1e-5], rtol=1e-4)
  with pytest.raises(ValueError, match="optimizer.name"):
    optim.make(opt_cfg(name="lion"), 10)
  with pytest.raises(ValueError, match="optimizer.schedule"):
    optim.make(opt_cfg(schedule="cosine"), 10)
  with pytest.raises(ValueError, match="need schedule='linear'"):  # a warmup the constant schedule would drop
    optim.make(ml_collections.ConfigDict(dict(name="adamw", lr=1e-3, warmup_steps=10)), 100)
  with pytest.raises(ValueError, match="fields are name, lr"):  # a typo is not a silent default
    optim.make(ml_collections.ConfigDict(dict(name="adam", lr=1e-3, warmup_step=10)), 100)


def test_history_noise_replaces_only_real_slots_at_its_rate():
  ids = np.full((64, 4, 6), V, np.int32)  # PAD everywhere but the real slots below
  ids[:, :, :4] = np.arange(4)[None, None]
  lens = np.full((64, 4), 3, np.int32)  # slot 3 holds an id but lies past gen_len: not real
  real = (ids != V) & (np.arange(6) < lens[..., None])
  got = np.asarray(ntp_step.noisy_history(ids, real, jax.random.key(0), 0.3, V))
  np.testing.assert_array_equal(got[~real], ids[~real])  # PAD and padding slots untouched
  changed = (got != ids)[real].mean()
  assert 0.3 * (1 - 1 / V) - 0.04 < changed < 0.3 * (1 - 1 / V) + 0.04  # a random id may equal the old one
  assert got[real].min() >= 0 and got[real].max() < V
  assert np.array_equal(np.asarray(ntp_step.noisy_history(ids, real, jax.random.key(0), 0.0, V)), ids)
  with pytest.raises(ValueError, match="history_noise=1.0"):
    ntp_step.noise_rate(1.0)


def test_history_noise_changes_what_is_read_not_what_is_scored(tiny, tiny_video):
  video = tiny_video[:2, :3]
  batch = labels.collate(random_labels(5, 2, 3, fixed_len=3), V, 6)
  ids, lens = batch["ids"], batch["lens"]
  fed = np.where(ids == V, V, (ids + 7) % V).astype(ids.dtype)
  with jax.default_matmul_precision("highest"):
    plain, _ = scoring.score(tiny.model, video, ids, lens)
    same, _ = scoring.score(tiny.model, video, ids, lens, ids)
    noisy, _ = scoring.score(tiny.model, video, ids, lens, fed)
  np.testing.assert_allclose(np.asarray(same), np.asarray(plain), rtol=1e-6)
  plain, noisy = np.asarray(plain), np.asarray(noisy)
  # frame 0's first block of K reads no gaze at all; every later prediction reads the fed ids
  np.testing.assert_allclose(noisy[:, 0, :K], plain[:, 0, :K], rtol=1e-5)
  assert np.abs(noisy[:, 1:, :3] - plain[:, 1:, :3]).max() > 1e-4


def test_soft_targets_follow_the_candidate_losses():
  losses = np.array([[0.5, 0.7, np.inf, 0.5], [np.inf] * 4], np.float32)
  q = np.asarray(ntp_step.soft_targets(losses, 0.1))
  assert q.shape == (2, 5)
  np.testing.assert_allclose(q[0].sum(), 1.0, rtol=1e-6)
  np.testing.assert_allclose(q[0, 0], q[0, 3], rtol=1e-6)  # equal losses, equal targets
  np.testing.assert_allclose(q[0, 1] / q[0, 0], np.exp(-2.0), rtol=1e-5)
  assert q[0, 2] == 0 and q[0, 4] == 0  # an unavailable id and EOS are never targets
  np.testing.assert_array_equal(q[1], 0)  # a slot with no candidate (padding) has no target
  with pytest.raises(ValueError, match="soft_targets=-0.1"):
    ntp_step.soft_temperature(ml_collections.ConfigDict(dict(loss=dict(soft_targets=-0.1))))


def test_soft_targets_at_a_low_temperature_give_the_hard_loss(tiny, tiny_video):
  """Candidate losses whose unique minimum is the label's id: at temperature -> 0 the soft
  cross-entropy is the label's -log p; at a high one it is another number."""
  video = tiny_video[:2, :2]
  entries = random_labels(6, 2, 2, fixed_len=3)
  batch = labels.collate(entries, V, 3)
  rng = np.random.default_rng(0)
  cands = rng.uniform(1.0, 2.0, (2, 2, 3, V)).astype(np.float32)
  for b in range(2):
    for t in range(2):
      for s, g in enumerate(batch["ids"][b, t]):
        cands[b, t, s, batch["ids"][b, t, :s]] = np.inf  # chosen before this step
        cands[b, t, s, g] = 0.5
  batch["video"] = video
  with jax.default_matmul_precision("highest"):
    hard, _ = ntp_step.loss(tiny.model, batch, optimize_tlp=False)
    soft_cold, _ = ntp_step.loss(tiny.model, dict(batch, candidate_losses=cands), optimize_tlp=False,
                                 temperature=1e-3)
    soft_warm, _ = ntp_step.loss(tiny.model, dict(batch, candidate_losses=cands), optimize_tlp=False,
                                 temperature=1.0)
  np.testing.assert_allclose(float(soft_cold), float(hard), rtol=1e-5)
  assert abs(float(soft_warm) - float(hard)) > 1e-2
