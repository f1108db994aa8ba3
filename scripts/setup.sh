#!/usr/bin/env bash
# One-time (idempotent) set-up: Debian packages GPAW needs, then the project venv in .venv.
# Re-running is cheap: each step is skipped when already satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(libxc-dev libopenblas-dev libopenmpi-dev openmpi-bin git)
missing=()
for pkg in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($python --version)"
  "$python" -m venv .venv
fi

# Reinstall only when the dependency specification changes.
stamp=.venv/.esrepro-installed
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing the Python environment (GPAW builds from source on first install)"
  .venv/bin/python -m pip install -q --upgrade pip wheel setuptools
  # torch is pinned to 2.13.0 in pyproject.toml; a CPU wheel is found through pip's config.
  OPENBLAS_NUM_THREADS=1 .venv/bin/python -m pip install -q -e ".[dev,cluster]"
  echo "$want" > "$stamp"
fi

# DVC needs a git repository; a source tarball (no .git) gets one.
[ -d .git ] || git init -q
echo "setup: ready ($(.venv/bin/python -c 'import gpaw, torch; print("gpaw", gpaw.__version__, "torch", torch.__version__)'))"
