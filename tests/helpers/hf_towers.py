"""Random HF-layout (transformers) tensors of the DINOv2-reg and SigLIP vision towers, for a
FeatureViT config: what the teacher and gazed-ViT loaders read."""

import numpy as np


def dinov2(cfg, rng):
  d, m = cfg.hidden, cfg.mlp
  t = {"embeddings.cls_token": (1, 1, d), "embeddings.mask_token": (1, d),
       "embeddings.register_tokens": (1, cfg.registers, d),
       "embeddings.position_embeddings": (1, 1 + cfg.pos_grid**2, d),
       "embeddings.patch_embeddings.projection.weight": (d, 3, 14, 14),
       "embeddings.patch_embeddings.projection.bias": (d,), "layernorm.weight": (d,), "layernorm.bias": (d,)}
  for i in range(cfg.layers):
    p = f"encoder.layer.{i}."
    for n in ("norm1", "norm2"):
      t[p + n + ".weight"], t[p + n + ".bias"] = (d,), (d,)
    for n in ("attention.attention.query", "attention.attention.key", "attention.attention.value",
              "attention.output.dense"):
      t[p + n + ".weight"], t[p + n + ".bias"] = (d, d), (d,)
    t[p + "mlp.fc1.weight"], t[p + "mlp.fc1.bias"] = (m, d), (m,)
    t[p + "mlp.fc2.weight"], t[p + "mlp.fc2.bias"] = (d, m), (d,)
    t[p + "layer_scale1.lambda1"], t[p + "layer_scale2.lambda1"] = (d,), (d,)
  return {k: rng.normal(0, 0.1, s).astype(np.float32) for k, s in t.items()}


def siglip(cfg, rng):
  d, m = cfg.hidden, cfg.mlp
  t = {"vision_model.embeddings.patch_embedding.weight": (d, 3, 16, 16),
       "vision_model.embeddings.patch_embedding.bias": (d,),
       "vision_model.embeddings.position_embedding.weight": (196, d),
       "vision_model.post_layernorm.weight": (d,), "vision_model.head.probe": (1, 1, d)}
  for i in range(cfg.layers):
    p = f"vision_model.encoder.layers.{i}."
    for n in ("layer_norm1", "layer_norm2"):
      t[p + n + ".weight"], t[p + n + ".bias"] = (d,), (d,)
    for n in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"):
      t[p + n + ".weight"], t[p + n + ".bias"] = (d, d), (d,)
    t[p + "mlp.fc1.weight"], t[p + "mlp.fc1.bias"] = (m, d), (m,)
    t[p + "mlp.fc2.weight"], t[p + "mlp.fc2.bias"] = (d, m), (d,)
  return {k: rng.normal(0, 0.1, s).astype(np.float32) for k, s in t.items()}
