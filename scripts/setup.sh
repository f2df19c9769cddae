# Sourced by demo.sh and test.sh: a virtual environment in .venv (made once) with the package
# and its test dependencies. constraints.txt pins torch to the CPU wheel of this project's
# machines; elsewhere pip takes any torch >= 2.2 (install your CUDA build first as usual).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${PIXELRNN_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
. "$VENV/bin/activate"
python -m pip install -q -c constraints.txt -e ".[test]"
