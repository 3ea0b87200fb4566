"""`python -m autogaze_jax.cli ...` is `autogaze-jax ...`."""

import sys

from autogaze_jax.cli.main import main

sys.exit(main())
