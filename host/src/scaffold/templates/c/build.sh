#!/bin/sh
# Builds {{name}}.wasm with wit-bindgen, clang and wasm-tools (see README.md for installing them).
set -eu
cd "$(dirname "$0")"
{{env}}sh sdk/build.sh {{name}}.wasm {{snake}}.c
echo "built {{name}}.wasm"
