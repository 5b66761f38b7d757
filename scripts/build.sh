#!/usr/bin/env bash
# Builds the native helper (node-gyp, offline against the installed Node headers) and the renderer bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f engine/native/binding.gyp ]; then npx node-gyp rebuild --silent --directory engine/native; fi
if [ -f renderer/vite.config.ts ]; then npx vite build --logLevel warn --config renderer/vite.config.ts; fi
if [ -f electron/tsconfig.build.json ]; then npx tsc -p electron/tsconfig.build.json; fi
