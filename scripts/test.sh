#!/usr/bin/env bash
# Set up (first run: a virtual environment in .venv) and run the test suite. With ../shared/data
# beside the checkout, the tests on the real datasets and shipped models run too.
. "$(dirname "$0")/setup.sh"
# Debian's Fashion-MNIST, for the test on the real files (skipped where it cannot be installed).
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (timeout 300 apt-get update -qq && timeout 300 apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 || true
fi
# Debian's Chromium, for the page's browser tests (skipped where it cannot be installed).
if ! command -v chromedriver >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (timeout 300 apt-get update -qq && timeout 600 apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 || true
fi
# Build the CPU LSTM kernel now (about 30 s; cached): fail here if it cannot be built. Beside it, on the
# other core, the build a machine without this CPU's vector units makes, which tests/test_fused_scan.py
# tests (it builds it itself if this one fails).
load_kernel='import sys; from pixelrnn.layers import scan_kernel; sys.exit(scan_kernel.load() is None)'
(PIXELRNN_NATIVE_MARCH="$(python tests/helpers.py)" timeout 600 python -c "$load_kernel" >/dev/null 2>&1 || true) &
timeout 600 python -c "$load_kernel"
wait
# Stopped after 40 minutes: about 8-12 on this project's AVX-512 machine, while an AVX2 machine with half
# the L2 cache once took 18 minutes for a suite that took 5 here; the margin covers it on a slow hour.
timeout 2400 python -m pytest -q "$@"
