"""The AutoGaze gaze model (docs/design.md, "Gaze model"): conv video encoder, connector, and the
LLaMA-style decoder with K-way multi-token and task-loss heads.

The modules are pure functions of their parameters and explicit caches; decoding lives in
`autogaze_jax.models.decoding`, teacher forcing in `autogaze_jax.models.scoring`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models import gaze_config, layers


def _torch_conv_init(fan_in):
  """PyTorch's default conv init (kaiming-uniform a=sqrt(5)) == U(+-1/sqrt(fan_in))."""
  bound = 1.0 / fan_in**0.5
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class ConvEncoder(nnx.Module):
  """Per-frame 16x16 patch conv -> LayerNorm -> causal 3x3x3 conv + ReLU -> 1x1x1 conv.

  No residual. Layout NDHWC = (B, T, H, W, C). The causal time padding of each trunk block
  is two zero frames, or the block's cached last input frames when streaming.
  """

  def __init__(self, cfg, rngs: nnx.Rngs):
    v = cfg.vision
    k, c = v.kernel_size, v.hidden_dim
    fan = 3 * k * k
    self.patch_conv = nnx.Conv(
      3, c, (v.temporal_patch_size, k, k), strides=(v.temporal_patch_size, k, k),
      padding="VALID",
      kernel_init=nnx.with_partitioning(_torch_conv_init(fan), (None, None, None, "conv_in", "embed")),
      bias_init=nnx.with_partitioning(_torch_conv_init(fan), ("embed",)), rngs=rngs,
    )
    self.norm = nnx.LayerNorm(c, epsilon=v.layernorm_eps, use_fast_variance=False, rngs=rngs)
    self.time_pad = v.trunk_temporal_kernel_size - 1
    ks, kt = v.trunk_spatial_kernel_size, v.trunk_temporal_kernel_size
    fan = c * kt * ks * ks
    self.blocks = nnx.List([
      nnx.Conv(
        c, c, (kt, ks, ks), padding=((0, 0), (ks // 2, ks // 2), (ks // 2, ks // 2)),
        kernel_init=nnx.with_partitioning(_torch_conv_init(fan), (None, None, None, "conv_in", "embed")),
        bias_init=nnx.with_partitioning(_torch_conv_init(fan), ("embed",)), rngs=rngs,
      )
      for _ in range(v.depth)
    ])
    self.out_proj = nnx.Linear(
      c, v.out_dim,
      kernel_init=nnx.with_partitioning(_torch_conv_init(c), ("conv_in", "embed")),
      bias_init=nnx.with_partitioning(_torch_conv_init(c), ("embed",)), rngs=rngs,
    )

  def init_cache(self, batch: int, grid: int, dtype=jnp.float32):
    c = self.norm.scale[...].shape[0]
    return [jnp.zeros((batch, self.time_pad, grid, grid, c), dtype) for _ in self.blocks]

  def __call__(self, frames_bthwc, cache=None):
    """Returns features (B, T, h, w, C) and the new cache (last frames of each block input)."""
    x = self.norm(self.patch_conv(frames_bthwc))
    b, _, gh, gw, _ = x.shape
    if cache is None:
      cache = self.init_cache(b, gh, x.dtype)
    new_cache = []
    for block, past in zip(self.blocks, cache):
      x = jnp.concatenate([past.astype(x.dtype), x], axis=1)
      new_cache.append(x[:, x.shape[1] - self.time_pad :])
      x = jax.nn.relu(block(x))
    return self.out_proj(x), new_cache


class GazeDecoder(nnx.Module):
  """LLaMA trunk over input embeddings, plus lm_head (D -> K*(V+1)) and task-loss head (D -> K)."""

  def __init__(self, cfg, rngs: nnx.Rngs):
    d = cfg.decoder
    self.vocab = cfg.num_vision_tokens_each_frame + 1
    self.k = d.num_multi_token_pred
    self.embed_tokens = nnx.Embed(
      self.vocab, d.hidden_size, embedding_init=layers.dense_init(("vocab", "embed")), rngs=rngs
    )
    self.layers = nnx.List([layers.DecoderLayer(d, rngs) for _ in range(d.num_layers)])
    self.norm = layers.RMSNorm(d.hidden_size, d.rms_norm_eps)
    self.lm_head = nnx.Linear(
      d.hidden_size, self.k * self.vocab, use_bias=False,
      kernel_init=layers.dense_init(("embed", "vocab")), rngs=rngs,
    )
    self.task_loss_prediction_head = nnx.Linear(
      d.hidden_size, self.k, use_bias=False, kernel_init=layers.dense_init(("embed", None)),
      rngs=rngs,
    )
    self.inv_freq = nnx.Variable(  # a constant, not a parameter
      jnp.asarray(layers.llama3_inv_freq(d.head_dim, d.rope_theta, d.rope_scaling.to_dict()))
    )

  def trunk(self, x_btd, pos_bt, new_ok_bt, caches, start, cache_ok_bs, last_only=False, cache_extent=None):
    """Runs all layers on a block of new tokens; their K/V go to cache slot `start` on.

    new_ok (B, T): visible tokens of the block (causal inside it); cache_ok (B, S): visible
    cache slots. Returns the final-normed hidden states (of the last token only if
    `last_only`: the last layer then skips the queries nobody reads) and the caches. cache_extent:
    no visible cache slot lies at or past it (None: unknown; the whole cache is read).
    """
    inv = self.inv_freq[...]
    new = []
    n = len(self.layers)
    for i, (layer, cache) in enumerate(zip(self.layers, caches)):
      x_btd, cache = layer(
        x_btd, pos_bt, new_ok_bt, cache, start, cache_ok_bs, inv, last_only and i == n - 1, cache_extent
      )
      new.append(cache)
    return self.norm(x_btd), new

  def heads(self, h_btd):
    """Logits (B, T, K, V+1), head-major as the official lm_head, and task loss (B, T, K)."""
    logits = self.lm_head(h_btd).astype(jnp.float32)
    logits = logits.reshape(*h_btd.shape[:-1], self.k, self.vocab)
    return logits, self.task_loss_prediction_head(h_btd).astype(jnp.float32)


class GazeModel(nnx.Module):
  """vision_model + connector + gaze_decoder, as the official `gazing_model`."""

  def __init__(self, cfg, rngs: nnx.Rngs):
    gaze_config.validate(cfg)
    self.img_size = cfg.input_img_size
    self.vision_model = ConvEncoder(cfg, rngs)
    p, d = gaze_config.vision_tokens_per_frame(cfg), cfg.decoder.hidden_size
    self.pos_embed = nnx.Param(
      jax.random.normal(rngs.params(), (p, d), jnp.float32), out_sharding=(None, "embed")
    )
    self.gaze_decoder = GazeDecoder(cfg, rngs)

  def encode(self, video_bt3hw, conv_cache=None):
    """Preprocessed video (B, T, 3, H, W) -> vision tokens (B, T, P, D), new conv cache.

    The in-model PyTorch-bicubic squash to input_img_size x input_img_size comes first.
    """
    b, t = video_bt3hw.shape[:2]
    x = image_lib.resize_bicubic(video_bt3hw, (self.img_size, self.img_size))
    x = jnp.transpose(x, (0, 1, 3, 4, 2)).astype(self.pos_embed[...].dtype)  # bf16 models compute in bf16
    x = mesh_lib.constrain(x, ("batch", None, None, None, None))
    feats, conv_cache = self.vision_model(x, conv_cache)
    feats = feats.reshape(b, t, -1, feats.shape[-1]) + self.pos_embed[...]
    return mesh_lib.constrain(feats, ("batch", None, None, "act_embed")), conv_cache


def num_params(model: nnx.Module) -> int:
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
