"""semgen: synthetic SEM images of semiconductor defects, curated and measured on real ones."""

__version__ = "0.1.0"

import os as _os

# On a busy 2-core machine OpenMP's default spin-waiting made a torch step ~9x slower (measured:
# 54 s vs 5.8 s wall). Passive waiting is not free on free cores (a MobileNetV3-Small step: 194
# against 255-265 images/s, docs/classifier.md): set OMP_WAIT_POLICY=ACTIVE on dedicated cores.
# Must precede `import torch`.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
