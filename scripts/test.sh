#!/usr/bin/env bash
# The whole test suite: lint, type-check, then each runtime's tests. Stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run --silent build
npm run --silent lint
npm run --silent typecheck
npm run --silent test:tools
npm run --silent test:protocol
npm run --silent test:renderer
npm run --silent test:electron
npm run --silent test:e2e
npm run --silent test:engine
npm run --silent test:vm
