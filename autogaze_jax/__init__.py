"""AutoGaze in JAX: `from autogaze_jax import AutoGaze, GazeStream`.

The two names load the inference stack on first use (module `__getattr__`), so importing a
submodule, e.g. a config's `autogaze_jax.models.gaze_config`, loads nothing heavy.
"""

__all__ = ["AutoGaze", "GazeStream"]
__version__ = "0.1.0"


def __getattr__(name: str):
  if name in __all__:
    from autogaze_jax.inference import api

    return getattr(api, name)
  raise AttributeError(f"module 'autogaze_jax' has no attribute {name!r}")
