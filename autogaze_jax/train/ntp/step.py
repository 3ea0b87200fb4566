"""NTP, stage 1 (docs/design.md, NTP): teacher-forced next-token prediction of greedy labels plus
the task-loss regression, and its jitted, donated, sharded train step.

Per clip b, with m the mask of real label slots (PAD and the official "+1 EOS" slot are
never targets) and D = sum(m) / B + 1e-6 the micro-batch's real slots per clip:
  ntp(b) = -sum_j m[b,j] log p[b,j] / D
  tlp(b) =  sum_j m[b,j] (pred[b,j] - task_losses[b,j])^2 / D
  loss   = mean_b (ntp(b) + w * tlp(b))        (w = 1 officially; tlp dropped if disabled)
log p comes from `scoring.score` (log(softmax + 1e-8), head j mod K for slot j), so
multi-token prediction needs nothing more here. The task model is not run.

Soft targets (ours, not the official recipe; temperature 0 = off, the official loss): with the
labeller's candidate losses L[b,j,v] (the loss each id v would have given at slot j's step),
the target of slot j is q = softmax(-(L - min L) / temperature) over the ids that were
available there, and -log p[b,j] becomes the cross-entropy -sum_v q_v log p[b,j,v]. Greedy
picks among near-equal candidates are otherwise arbitrary one-hot targets, and every step's
losses say how much each of the other candidates would have helped. As the temperature goes
to 0 the loss becomes the hard one.

History noise (ours, not the official recipe; 0 = off, the default of every variant but tiny, 0.3):
each real label slot the decoder reads as history is replaced, with that probability, by a
uniformly random id, while the targets stay the labels. Teacher forcing otherwise shows the
model only the labeller's own history, and a model that learns to continue that history
(consecutive frames' picks are alike) compounds its first mistakes when it gazes alone.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax import vocab as vocab_lib
from autogaze_jax.models import scoring
from autogaze_jax.models.gaze import GazeModel
from autogaze_jax.train import optim
from autogaze_jax.train import state as state_lib

GUARDED = ("task_losses", "ntp_loss", "task_loss_prediction_loss", "grad_norm")


def as_video(x):
  """uint8 frames (B, T, H, W, 3) -> normalised (B, T, 3, H, W); float input passes as is."""
  return image_lib.normalize_on_device(x) if x.dtype == jnp.uint8 else x.astype(jnp.float32)


def noisy_history(ids_btg, real_btg, key, rate: float, vocab: int):
  """The ids fed as history: each real slot replaced by a uniform id in [0, vocab) with
  probability `rate`; PAD and padding slots unchanged."""
  k_flip, k_id = jax.random.split(key)
  flip = real_btg & (jax.random.uniform(k_flip, ids_btg.shape) < rate)
  return jnp.where(flip, jax.random.randint(k_id, ids_btg.shape, 0, vocab, ids_btg.dtype), ids_btg)


def soft_targets(candidate_losses, temperature: float):
  """(..., V) candidate losses (inf: not available) -> target distributions (..., V+1) over the
  ids and EOS (which gets 0); all zeros where no id was available."""
  ok = jnp.isfinite(candidate_losses)
  best = jnp.min(jnp.where(ok, candidate_losses, jnp.inf), -1, keepdims=True)
  z = jnp.where(ok, -(candidate_losses - jnp.where(ok.any(-1, keepdims=True), best, 0.0)) / temperature, -jnp.inf)
  q = jnp.where(ok.any(-1, keepdims=True), jax.nn.softmax(z, -1), 0.0)
  return jnp.concatenate([q, jnp.zeros_like(q[..., :1])], -1)


def loss_terms(model, video, ids_btg, lens_bt, targets_btg, key=None, history_noise: float = 0.0,
               candidate_losses=None, temperature: float = 0.0, history_ids=None):
  """Per-clip ntp(b), tlp(b) (B,) and the mask (B, T, G) of real label slots; with
  `candidate_losses` (B, T, G, V) and a temperature > 0, ntp is the soft-target cross-entropy.
  history_ids (B, T, G; default `ids_btg`): the ids read as history before the noise, where
  they are not the scored ones (labels at the model's own states: its gazes, the expert's picks)."""
  vocab = model.gaze_decoder.vocab - 1
  g = ids_btg.shape[-1]
  real = (ids_btg != vocab) & (jnp.arange(g) < lens_bt[..., None])
  fed = history_ids
  if history_noise:
    fed = noisy_history(ids_btg if fed is None else fed, real, key, history_noise, vocab)
  if temperature > 0:
    probs, pred = scoring.slot_distributions(model, model.encode(video)[0], ids_btg, lens_bt, fed)
    q = soft_targets(candidate_losses, temperature)
    log_p = (q * jnp.log(probs + 1e-8)).sum(-1)
  else:
    log_p, pred = scoring.score(model, video, ids_btg, lens_bt, fed)
  m = real.astype(jnp.float32)
  denom = m.sum() / m.shape[0] + 1e-6
  ntp = -(log_p * m).sum((1, 2)) / denom
  tlp = (jnp.square(pred - targets_btg) * m).sum((1, 2)) / denom
  return ntp, tlp, m


def loss(model, batch, *, tlp_weight: float = 1.0, optimize_tlp: bool = True, key=None, history_noise: float = 0.0,
         temperature: float = 0.0):
  """The NTP loss of one micro-batch {video, ids, lens, task_losses[, candidate_losses][, history_ids]};
  returns (loss, aux)."""
  ntp, tlp, m = loss_terms(model, as_video(batch["video"]), batch["ids"], batch["lens"], batch["task_losses"],
                           key, history_noise, batch.get("candidate_losses"), temperature, batch.get("history_ids"))
  total = ntp + tlp_weight * tlp if optimize_tlp else ntp
  aux = {"ntp_loss": ntp.mean(), "task_loss_prediction_loss": tlp.mean(), "real_slots_per_clip": m.sum() / m.shape[0]}
  return total.mean(), aux


def _micro_batches(batch, accum: int):
  """(B, ...) -> (A, B / A, ...); micro-batch a takes rows a, a + A, ... so that every
  micro-batch stays spread over the devices the global batch is sharded on."""
  def split(x):
    if x.shape[0] % accum:
      raise ValueError(f"ntp: global batch {x.shape[0]} is not a multiple of accum_steps={accum}")
    return x.reshape(x.shape[0] // accum, accum, *x.shape[1:]).swapaxes(0, 1)
  return jax.tree.map(split, batch)



def train_step(graphdef, state, batch, key, frozen=(), *, accum_steps: int = 1, tlp_weight: float = 1.0,
                optimize_tlp: bool = True, history_noise: float = 0.0, temperature: float = 0.0):
  """One optimizer step over the global batch, in `accum_steps` micro-batches (gradients
  summed over micro-batch losses / A). A step whose labels, losses or gradients are
  not finite leaves the state unchanged and flags the offending quantity in the metrics.
  `key` draws the history noise (unused without it); `frozen` is unused (NTP needs no
  oracle): the shared step signature.
  """
  old = jax.tree.leaves(state)
  ts = nnx.merge(graphdef, state)
  model_graph, params, rest = nnx.split(ts.model, nnx.Param, ...)

  def micro(p, mb, k):
    mb = jax.tree.map(lambda x: mesh_lib.constrain(x, ("batch",) + (None,) * (x.ndim - 1)), mb)
    fn = lambda q: loss(nnx.merge(model_graph, q, rest), mb, tlp_weight=tlp_weight, optimize_tlp=optimize_tlp,
                        key=k, history_noise=history_noise, temperature=temperature)
    (value, aux), grads = jax.value_and_grad(fn, has_aux=True)(p)
    return grads, dict(aux, loss=value)

  if accum_steps == 1:
    grads, m = micro(params, batch, key)
  else:
    def body(acc, xs):
      mb, k = xs
      g, aux = micro(params, mb, k)
      return jax.tree.map(jnp.add, acc, (g, aux)), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    zero_m = {k: jnp.float32(0) for k in ("ntp_loss", "task_loss_prediction_loss", "real_slots_per_clip", "loss")}
    xs = (_micro_batches(batch, accum_steps), jax.random.split(key, accum_steps))
    (grads, m), _ = jax.lax.scan(body, (zeros, zero_m), xs)
    grads = jax.tree.map(lambda g: g / accum_steps, grads)
    m = {k: v / accum_steps for k, v in m.items()}
  m["grad_norm"] = optax.global_norm(grads)
  bad = {
    "task_losses": ~jnp.all(jnp.isfinite(batch["task_losses"])),
    "ntp_loss": ~jnp.isfinite(m["ntp_loss"]),
    "task_loss_prediction_loss": ~jnp.isfinite(m["task_loss_prediction_loss"]),
    "grad_norm": ~jnp.isfinite(m["grad_norm"]),
  }
  ok = ~jnp.any(jnp.stack([bad[k] for k in GUARDED]))
  ts.opt.update(ts.model, grads)
  new, treedef = jax.tree.flatten(nnx.state(ts))
  state = jax.tree.unflatten(treedef, [jnp.where(ok, n, o) for n, o in zip(new, old)])
  m.update({f"nonfinite_{k}": v.astype(jnp.float32) for k, v in bad.items()})
  return state, m


def noise_rate(rate) -> float:
  """loss.history_noise, checked: a probability in [0, 1)."""
  rate = float(rate)
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"ntp: loss.history_noise={rate} must be in [0, 1)")
  return rate


def soft_temperature(cfg) -> float:
  """loss.soft_targets, checked: the soft targets' temperature (0: hard labels), >= 0."""
  t = float(cfg.loss.get("soft_targets", 0.0))
  if not (t >= 0.0 and t < float("inf")):
    raise ValueError(f"ntp: loss.soft_targets={t} must be a finite temperature >= 0 (0: hard labels)")
  return t


BATCH_NDIMS = {"video": 5, "ids": 3, "lens": 2, "task_losses": 3}
SOFT_NDIMS = {"candidate_losses": 4}
HISTORY_NDIMS = {"history_ids": 3}


def batch_ndims(cfg) -> dict:
  """The step's batch keys -> ranks (candidate losses only with soft targets, history ids only
  with a DAgger round)."""
  dagger = cfg.get("dagger")
  return {**BATCH_NDIMS, **(SOFT_NDIMS if soft_temperature(cfg) > 0 else {}),
          **(HISTORY_NDIMS if dagger is not None and dagger.start else {})}


def accum_steps(cfg) -> int:
  """Micro-batches per optimizer step (cfg.micro_batch_size 0: none)."""
  if not cfg.micro_batch_size or cfg.micro_batch_size >= cfg.batch_size:
    return 1
  if cfg.batch_size % cfg.micro_batch_size:
    raise ValueError(f"ntp: batch_size={cfg.batch_size} is not a multiple of micro_batch_size={cfg.micro_batch_size}")
  return cfg.batch_size // cfg.micro_batch_size


def make_step(graphdef, shardings, mesh, cfg):
  """(jitted step, batch shardings): (state, batch, key, frozen) -> (state, metrics); the
  state is donated, the batch split over the mesh's batch axes."""
  batch_sh = {k: mesh_lib.batch_sharding(mesh, n) for k, n in batch_ndims(cfg).items()}
  repl = mesh_lib.replicated(mesh)
  fn = functools.partial(train_step, graphdef, accum_steps=accum_steps(cfg), tlp_weight=cfg.loss.tlp_weight,
                         optimize_tlp=cfg.loss.optimize_task_loss_prediction,
                         history_noise=noise_rate(cfg.loss.get("history_noise", 0.0)),
                         temperature=soft_temperature(cfg))
  step = jax.jit(fn, in_shardings=(shardings, batch_sh, repl, repl), out_shardings=(shardings, repl),
                 donate_argnums=0)
  return step, batch_sh


def abstract_inputs(cfg, mesh):
  """(graphdef, shardings, (state, batch, key, frozen) as jax.ShapeDtypeStruct), with the
  label slots of the labeller's largest (first-frame) budget."""
  tx = optim.make(cfg.optimizer, cfg.steps)
  g = cfg.gaze
  graphdef, state, shardings = state_lib.abstract_train_state(lambda: GazeModel(g, nnx.Rngs(0)), tx, mesh)
  v, k, b, t = g.num_vision_tokens_each_frame, g.decoder.num_multi_token_pred, cfg.batch_size, cfg.clip_len
  slots = vocab_lib.slots_per_frame(int(cfg.label.budget_ratio_first * v), k)
  sh = {k: mesh_lib.batch_sharding(mesh, n) for k, n in batch_ndims(cfg).items()}
  batch = {"video": state_lib.video_struct(cfg, mesh), "ids": state_lib.struct((b, t, slots), jnp.int32, sh["ids"]),
           "lens": state_lib.struct((b, t), jnp.int32, sh["lens"]),
           "task_losses": state_lib.struct((b, t, slots), jnp.float32, sh["task_losses"])}
  if "candidate_losses" in sh:
    batch["candidate_losses"] = state_lib.struct((b, t, slots, v), jnp.float32, sh["candidate_losses"])
  if "history_ids" in sh:
    batch["history_ids"] = state_lib.struct((b, t, slots), jnp.int32, sh["history_ids"])
  return graphdef, shardings, (state, batch, state_lib.key_struct(mesh), ())


def host_arrays(videos, collated: dict) -> dict:
  """The step's batch pytree from uint8 clips (B, T, H, W, 3) and `labels.collate` output."""
  return {"video": np.asarray(videos), "ids": collated["ids"], "lens": collated["lens"],
          "task_losses": collated["task_losses"]}
