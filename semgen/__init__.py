"""semgen: synthetic SEM images of semiconductor defects, curated and measured on real ones."""

__version__ = "0.1.0"

import os as _os

# On a busy 2-core machine OpenMP's default spin-waiting made a torch step ~9x slower (measured:
# 54 s vs 5.8 s wall); passive waiting costs nothing when cores are free. Must precede `import torch`.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
