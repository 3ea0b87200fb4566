"""autogaze_jax: AutoGaze (autoregressive gazing for efficient video understanding) in JAX."""

from autogaze_jax.api import AutoGaze, GazeStream

__all__ = ["AutoGaze", "GazeStream"]
__version__ = "0.1.0"
