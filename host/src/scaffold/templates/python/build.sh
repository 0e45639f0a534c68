#!/bin/sh
# Builds {{name}}.wasm with componentize-py (`pip install -r requirements.txt`, in a venv).
set -eu
cd "$(dirname "$0")"
"${COMPONENTIZE_PY:-componentize-py}" -d wit -w {{world}} componentize -p . -p sdk app -o {{name}}.wasm
