"""The user-facing `AutoGaze` object: load weights, gaze videos, score gazes, stream frames.

    from autogaze_jax import AutoGaze
    model = AutoGaze.from_pretrained("path/to/nvidia-AutoGaze")   # official dir or our ckpt
    out = model.gaze(video, gazing_ratio=0.75, task_loss_requirement=0.7)

Compiled functions are cached per (decode settings, input shapes); parameters are passed
as a pytree (`nnx.split` once, `nnx.merge` inside `jax.jit`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from autogaze_jax import checkpointing
from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax import vocab as vocab_lib
from autogaze_jax.inference import outputs
from autogaze_jax.models import decoding, gaze_config, precision, scoring
from autogaze_jax.models.gaze import GazeModel
from autogaze_jax.weights import gaze as gaze_weights


def _check_video(video) -> np.ndarray:
  """Accepts float (B, T, 3, H, W) preprocessed or uint8 (B, T, H, W, 3) frames."""
  v = np.asarray(video)
  if v.ndim != 5:
    raise ValueError(
      f"video: expected 5 dims, float32 (B, T, 3, H, W) or uint8 (B, T, H, W, 3); got shape {v.shape}"
    )
  if v.dtype == np.uint8:
    if v.shape[-1] != 3:
      raise ValueError(f"video: uint8 frames must be (B, T, H, W, 3); got shape {v.shape}")
    return np.stack([image_lib.preprocess(clip) for clip in v])
  if not np.issubdtype(v.dtype, np.floating):
    raise ValueError(f"video: dtype must be uint8 or floating point, got {v.dtype}")
  if v.shape[2] != 3:
    raise ValueError(f"video: preprocessed video must be (B, T, 3, H, W); got shape {v.shape}")
  if min(v.shape[:2]) < 1 or min(v.shape[3:]) < 1:
    raise ValueError(f"video: empty dimension in shape {v.shape}")
  if not np.all(np.isfinite(v)):
    raise ValueError("video: contains NaN or infinite values")
  return v.astype(np.float32)


class AutoGaze:
  """A gaze model with its config, parameters and mesh."""

  def __init__(self, cfg, model: GazeModel, mesh):
    self.config = cfg
    self.mesh = mesh
    self.graphdef, self.params = nnx.split(model)
    self._compiled = {}

  # ----------------------------------------------------------------------------- loading
  @classmethod
  def from_config(cls, cfg=None, seed: int = 0, mesh=None) -> AutoGaze:
    """A randomly initialised model (the released architecture by default)."""
    cfg = cfg or gaze_config.released_config()
    gaze_config.validate(cfg)
    mesh = mesh or mesh_lib.make_mesh()
    return cls(cfg, mesh_lib.build(lambda: GazeModel(cfg, nnx.Rngs(seed)), mesh), mesh)

  @classmethod
  def from_pretrained(cls, path: str, mesh=None) -> AutoGaze:
    """Official `model.safetensors` (+ `config.json`) directory or file, our checkpoint, or a
    hub id such as "nvidia/AutoGaze" (needs huggingface_hub; offline, the local hub cache)."""
    mesh = mesh or mesh_lib.make_mesh()
    cfg, model = gaze_weights.load_gaze(path, mesh)
    return cls(cfg, model, mesh)

  @property
  def model(self) -> GazeModel:
    return nnx.merge(self.graphdef, self.params)

  def with_params(self, param_state) -> AutoGaze:
    """The same gazer (config, mesh, compiled functions) with other parameters of this
    architecture, e.g. another checkpoint of a training run: nothing is recompiled."""
    model = self.model
    nnx.update(model, param_state)
    other = AutoGaze(self.config, model, self.mesh)
    other._compiled = self._compiled
    return other

  def with_precision(self, dtype: str) -> AutoGaze:
    """The same model with its parameters, activations and KV cache in `dtype` ("bfloat16"
    for accelerators; the heads, softmax and norm statistics stay float32:
    `models/precision.py`). "float32" (the default of every gazer) is exact to the official
    code; bfloat16 gazes agree with it mostly, not exactly (benchmarks/bf16_agreement.py)."""
    with mesh_lib.use(self.mesh):
      return AutoGaze(self.config, precision.cast(self.model, dtype), self.mesh)

  def save(self, path: str) -> None:
    """Writes an Orbax checkpoint that `from_pretrained` reads back."""
    checkpointing.save(path, nnx.state(self.model, nnx.Param), self.config)

  # ----------------------------------------------------------------------------- helpers
  def _jit(self, name, fn, spec, donate=()):
    """One jitted function per (name, spec) for the life of this object, so repeated calls
    (and every stream opened on it) reuse one compilation per input shape."""
    key = (name, spec)
    if key not in self._compiled:
      self._compiled[key] = jax.jit(fn, donate_argnums=donate)
    return self._compiled[key]

  def _put_batch(self, x, allow_pad: bool):
    """Shards the batch over the mesh; pads it (invariant mode only) to a device multiple."""
    n = int(np.prod([self.mesh.shape[a] for a in ("data", "fsdp") if a in self.mesh.shape]))
    b = x.shape[0]
    pad = (-b) % n
    if pad and allow_pad:
      x = np.concatenate([x, np.repeat(x[-1:], pad, 0)], 0)
    if x.shape[0] % n:
      return jax.device_put(x, mesh_lib.replicated(self.mesh)), b
    return jax.device_put(x, mesh_lib.batch_sharding(self.mesh, x.ndim)), b

  def _resolve(self, b, t, gazing_ratio, task_loss_requirement):
    inf = self.config.inference
    if gazing_ratio is None and task_loss_requirement is None:
      gazing_ratio, task_loss_requirement = inf.gazing_ratio, inf.task_loss_requirement
    vocab = self.config.num_vision_tokens_each_frame
    budgets = vocab_lib.budgets_from_ratio(1.0 if gazing_ratio is None else gazing_ratio, t, vocab)
    eps = vocab_lib.check_task_loss_requirement(task_loss_requirement, b, t)
    return budgets, eps

  # ----------------------------------------------------------------------------- gazing
  def gaze(self, video, gazing_ratio=None, task_loss_requirement=None, *, lockstep=False,
           generate_only=False, sample=False, temperature=1.0, key=None, gazing_info=None,
           segments=4) -> dict:
    """Gazes a batch of clips; returns the official output dict (docs/design.md, "The gaze call").

    video: float32 (B, T, 3, H, W) preprocessed as the official processor does (any H x W;
      squashed to 224 inside the model) or uint8 frames (B, T, H, W, 3).
    gazing_ratio: None, a number in (0, 1] or T per-frame numbers. Budget int(r * 265).
    task_loss_requirement: None, a number, (T,) or (B, T): stop a frame once the predicted
      reconstruction loss is <= it. With neither given, the config's defaults apply.
    lockstep: the official batch coupling instead of batch-invariant decoding.
    sample/temperature/key: sampled decoding (top-k 50) instead of greedy.
    gazing_info: official gazes to score instead of generating (teacher forcing).
    """
    v = _check_video(video)
    b, t = v.shape[:2]
    if temperature <= 0 or not np.isfinite(temperature):
      raise ValueError(f"temperature: must be a positive number, got {temperature}")
    vocab, k = self.config.num_vision_tokens_each_frame, self.config.decoder.num_multi_token_pred
    eps = None
    if gazing_info is not None:
      ids, lens = outputs.from_official(
        gazing_info["gazing_pos"], gazing_info["if_padded_gazing"],
        gazing_info["num_gazing_each_frame"], vocab, k,
      )
      if ids.shape[:2] != (b, t):
        raise ValueError(f"gazing_info: gazes are for {ids.shape[:2]} clips x frames, video is {(b, t)}")
    else:
      budgets, eps = self._resolve(b, t, gazing_ratio, task_loss_requirement)
      ids, lens = self.generate(v, budgets, eps, lockstep=lockstep, sample=sample,
                                temperature=temperature, key=key, segments=segments)
    extras = {}
    if not generate_only:
      lp, tau = self.score_fixed(v, ids, lens)
      extras = {"log_action_probs": lp, "task_loss_prediction": tau}
    out = outputs.to_official(ids, lens, vocab, self.config.scales, extras)
    out.setdefault("log_action_probs", None)
    out.setdefault("task_loss_prediction", None)
    out["has_task_loss_requirement"] = eps is not None
    out["task_loss_requirement"] = eps
    return out

  def generate(self, video, budgets, eps, *, lockstep=False, sample=False, temperature=1.0,
               key=None, segments=4, bounded_reads=False):
    """Fixed-shape generation: local ids (B, T, G) and generated slots (B, T), on host.
    bounded_reads: attention reads the cache only up to its filled extent, in blocks (same
    gazes; the default False reads every slot, masked: faster on CPU)."""
    b, t = video.shape[:2]
    k = self.config.decoder.num_multi_token_pred
    spec = decoding.DecodeSpec(
      slots=vocab_lib.slots_per_frame(int(budgets.max()), k), lockstep=lockstep,
      sample=sample, use_task_loss=eps is not None, segments=segments, bounded_reads=bounded_reads,
    )
    fn = self._jit("generate", functools.partial(self._generate_fn, spec=spec), spec)
    xv, real_b = self._put_batch(video, allow_pad=not lockstep)
    e = np.zeros((b, t), np.float32) if eps is None else eps
    xe, _ = self._put_batch(e, allow_pad=not lockstep)
    keys = decoding.frame_keys(key if key is not None else jax.random.key(0), xv.shape[0])
    with jax.default_matmul_precision(self.config.matmul_precision), mesh_lib.use(self.mesh):
      ids, lens = fn(self.params, xv, jnp.asarray(budgets), xe, keys, jnp.float32(temperature))
    return np.asarray(ids)[:real_b], np.asarray(lens)[:real_b]

  def _generate_fn(self, params, video, budgets, eps, keys, temperature, spec):
    model = nnx.merge(self.graphdef, params)
    return decoding.generate(model, video, budgets, eps, keys, temperature, spec)

  def _stream_fn(self, params, state, frame, budget, eps, keys, temperature, spec):
    model = nnx.merge(self.graphdef, params)
    return decoding.stream_step(model, state, frame, budget, eps, keys, temperature, spec)

  def score_fixed(self, video, ids, lens):
    """Teacher-forced log-probs and task-loss predictions (B, T, G) for fixed-shape gazes."""
    fn = self._jit("score", self._score_fn, None)
    xv, real_b = self._put_batch(np.asarray(video, np.float32), allow_pad=True)
    xi, _ = self._put_batch(np.asarray(ids, np.int32), allow_pad=True)
    xl, _ = self._put_batch(np.asarray(lens, np.int32), allow_pad=True)
    with jax.default_matmul_precision(self.config.matmul_precision), mesh_lib.use(self.mesh):
      lp, tau = fn(self.params, xv, xi, xl)
    return np.asarray(lp)[:real_b], np.asarray(tau)[:real_b]

  def _score_fn(self, params, video, ids, lens):
    return scoring.score(nnx.merge(self.graphdef, params), video, ids, lens)

  # ----------------------------------------------------------------------------- streaming
  def stream(self, batch_size: int, gazing_ratio=None, task_loss_requirement=None, *,
             max_frames: int | None = None, window: int | None = None, sample=False,
             temperature=1.0, key=None, bounded_reads: bool = True) -> GazeStream:
    """A frame-by-frame gazer whose outputs equal whole-clip decoding (see GazeStream).
    `bounded_reads` (default): attention reads the cache only up to the frames seen so far, in
    blocks, instead of all max_frames frames from the first one on (not with `window`, whose
    ring buffer is always full); docs/results.md has the latencies of both."""
    return GazeStream(self, batch_size, gazing_ratio, task_loss_requirement, max_frames, window,
                      sample, temperature, key, bounded_reads)


class GazeStream:
  """Feeds one frame at a time through fixed-size caches (KV + conv).

  Without `window`, the cache holds `max_frames` frames (config.max_num_frames by default)
  and frame t's gazes equal frame t of whole-clip decoding. With `window=W`, only the last
  W frames stay visible (a ring buffer): memory is flat for endless streams, and results
  differ from whole-clip decoding once more than W frames have passed.
  """

  def __init__(self, gazer: AutoGaze, batch_size, gazing_ratio, task_loss_requirement,
               max_frames, window, sample, temperature, key, bounded_reads=True):
    cfg = gazer.config
    if window is not None and (int(window) != window or window < 2):
      raise ValueError(f"window: must be an integer >= 2 frames, got {window}")
    self.gazer, self.b = gazer, batch_size
    self.max_frames = None if window else int(max_frames or cfg.max_num_frames)
    if gazing_ratio is None and task_loss_requirement is None:
      gazing_ratio, task_loss_requirement = cfg.inference.gazing_ratio, cfg.inference.task_loss_requirement
    vocab = cfg.num_vision_tokens_each_frame
    self.budget = int(vocab_lib.budgets_from_ratio(1.0 if gazing_ratio is None else gazing_ratio, 1, vocab)[0])
    eps = vocab_lib.check_task_loss_requirement(task_loss_requirement, batch_size, 1)
    self.eps = None if eps is None else eps[:, 0]
    self.spec = decoding.DecodeSpec(
      slots=vocab_lib.slots_per_frame(self.budget, cfg.decoder.num_multi_token_pred),
      sample=sample, use_task_loss=self.eps is not None, window=window,
      bounded_reads=bool(bounded_reads),
    )
    self.temperature = temperature
    self.keys = decoding.frame_keys(key if key is not None else jax.random.key(0), batch_size)
    model = gazer.model
    slots = decoding.cache_slots(model, self.spec, self.max_frames or 0)
    # The caches take the model's compute dtype, as in whole-clip decoding (bf16 models: bf16).
    self.state = decoding.init_state(model, batch_size, self.spec, slots, model.pos_embed[...].dtype)
    self.frames_seen = 0
    self._step = gazer._jit("stream", functools.partial(gazer._stream_fn, spec=self.spec), self.spec, donate=1)

  def step(self, frame) -> dict:
    """frame: float32 (B, 3, H, W) preprocessed or uint8 (B, H, W, 3). Returns this frame's
    `gazing_pos` (B, n) global ids (t * V + local), `if_padded_gazing`, `num_gazing`."""
    v = _check_video(np.asarray(frame)[:, None])[:, 0]
    if v.shape[0] != self.b:
      raise ValueError(f"frame: batch of {v.shape[0]}, stream was opened for {self.b}")
    if self.max_frames is not None and self.frames_seen >= self.max_frames:
      raise ValueError(
        f"stream: already {self.frames_seen} frames, the cache holds max_frames={self.max_frames}; "
        "open the stream with a larger max_frames or a window"
      )
    eps = np.zeros((self.b,), np.float32) if self.eps is None else self.eps
    with jax.default_matmul_precision(self.gazer.config.matmul_precision):
      self.state, ids, n = self._step(
        self.gazer.params, self.state, jnp.asarray(v), jnp.int32(self.budget), jnp.asarray(eps),
        self.keys, jnp.float32(self.temperature),
      )
    vocab = self.gazer.config.num_vision_tokens_each_frame
    out = outputs.to_official(np.asarray(ids)[:, None], np.asarray(n)[:, None], vocab,
                              self.gazer.config.scales)
    out["gazing_pos"] = out["gazing_pos"] + self.frames_seen * vocab
    self.frames_seen += 1
    return {k: out[k] for k in ("gazing_pos", "if_padded_gazing", "num_gazing_each_frame")}
