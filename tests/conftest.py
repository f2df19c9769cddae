import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

# Tests compare runs bit for bit: keep the thread count fixed (the CLI's default follows the
# machine's load, runtime.LoadAwareThreads; tests/test_threads.py tests that on its own).
os.environ.setdefault("PIXELRNN_THREADS", str(torch.get_num_threads()))
