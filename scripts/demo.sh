#!/usr/bin/env bash
# Set up (first run: a virtual environment in .venv) and run the demo: the shipped Diagonal
# BiLSTM's exact NLL on the embedded digits, 64 samples and completions in ./pixelrnn-demo.
. "$(dirname "$0")/setup.sh"
pixelrnn demo "$@"
