#!/bin/sh
# Builds {{name}}.wasm with componentize-js (`npm install` first).
set -eu
cd "$(dirname "$0")"
node build.mjs --world {{world}} --wit wit --out {{name}}.wasm plugin.js
