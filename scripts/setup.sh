#!/bin/bash
# The first of the README's two commands: install every dependency from Debian's packages,
# build everything, and run the main job (make demo). Idempotent: run it again any time.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
make -j"${JOBS:-2}" all
make guest lab
make demo
