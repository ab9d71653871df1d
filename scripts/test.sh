#!/usr/bin/env bash
# Run Atoll's test suite: install dependencies, then pytest over tests/. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
exec .venv/bin/python -m pytest "$@"
