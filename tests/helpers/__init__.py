"""Test helpers: the Cloud Storage emulator, the multi-host driver, the reference decoder and
training-step references, and deliberately broken videos."""
