"""Training data: sources (folders, TFDS ArrayRecord, generated, bundled samples), transforms,
labels, and the Grain pipeline that feeds training (files are read by autogaze_jax.video)."""
