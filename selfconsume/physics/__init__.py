"""The physics corrector: MuJoCo XLA (the humanoid loaded through brax), vmapped over motions."""

import contextlib
import io

# mujoco-mjx probes for its optional NVIDIA Warp backend on import and prints two lines to
# stdout when it is absent ("Failed to import warp ..."). We never use that backend, so
# its first import (every physics module imports mjx through this package) is kept quiet.
with contextlib.redirect_stdout(io.StringIO()):
  from mujoco import mjx  # noqa: F401  pylint: disable=unused-import
