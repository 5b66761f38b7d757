#!/usr/bin/env bash
# tsc --noEmit once per runtime, so a type from the wrong runtime fails the build.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc --noEmit -p tsconfig.json
for project in renderer/tsconfig.json electron/tsconfig.json; do
  if [ -f "$project" ]; then npx tsc --noEmit -p "$project"; fi
done
