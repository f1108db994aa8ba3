#!/usr/bin/env bash
# One-time (idempotent) set-up: Debian packages GPAW needs, then the project venv in .venv.
# Re-running is cheap: each step is skipped when already satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."

# libfftw3-dev: GPAW's plane-wave FFTs (scripts/gpaw_siteconfig.py); without it GPAW falls back to scipy.
# chromium, chromium-driver: the headless-browser test of the reports (tests/test_reports_browser.py).
debs=(libxc-dev libopenblas-dev libopenmpi-dev libfftw3-dev openmpi-bin git chromium chromium-driver)
missing=()
for pkg in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# npm fetches the Vega scripts of the `dvc plots show` page (below); a Node.js install that is
# not Debian's may already bring it.
command -v npm >/dev/null || missing+=(npm)
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

# The environment is requirements.lock, installed exactly (pinned versions, checked hashes, no
# resolver); pyproject.toml keeps the ranges it was compiled from (README: "Updating the lock").
# Reinstall only when the lock, the project or GPAW's build configuration changes.
stamp=.venv/.esrepro-installed
want=$(cat requirements.lock pyproject.toml scripts/gpaw_siteconfig.py | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing the Python environment (GPAW builds from source on first install)"
  export GPAW_CONFIG="$PWD/scripts/gpaw_siteconfig.py"
  .venv/bin/python -m pip install -q --upgrade pip wheel setuptools
  # torch is locked to its CPU build (2.13.0+cpu); pip finds the wheel through its config
  # (find-links or the PyTorch CPU index).
  OPENBLAS_NUM_THREADS=1 .venv/bin/python -m pip install -q --require-hashes --no-deps -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps -e .
  # pip reuses a GPAW wheel it built earlier, whatever GPAW_CONFIG said then: rebuild a GPAW that
  # lacks FFTW or C BLAS (drop the stale wheel so the rebuilt one is what pip caches from now on).
  gpaw_built_right() {
    .venv/bin/python -c "import sys, _gpaw, gpaw.fftw; sys.exit(not (gpaw.fftw.have_fftw() and hasattr(_gpaw, 'mmm')))"
  }
  if ! gpaw_built_right; then
    gpaw_version=$(.venv/bin/python -c "from importlib.metadata import version; print(version('gpaw'))")
    echo "setup: GPAW $gpaw_version was built without FFTW or BLAS; rebuilding it with both"
    .venv/bin/python -m pip cache remove gpaw >/dev/null 2>&1 || true
    # The lock's gpaw entry (the requirement line and its hashes), so the rebuild is hash-checked.
    gpaw_lock=$(mktemp)
    awk '/^gpaw==/{p=1} p{print} p && !/\\$/{exit}' requirements.lock > "$gpaw_lock"
    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m pip install -q --force-reinstall --no-deps \
      --require-hashes -r "$gpaw_lock"
    rm -f "$gpaw_lock"
    gpaw_built_right || { echo "setup: GPAW still lacks FFTW or BLAS; see scripts/gpaw_siteconfig.py" >&2; exit 1; }
  fi
  echo "$want" > "$stamp"
fi

# DVC needs a git repository; a source tarball (no .git) gets one.
[ -d .git ] || git init -q
# The page template of `dvc plots show` (.dvc/config) with Vega inlined, so it draws offline.
.venv/bin/python scripts/dvc_plots_template.py
echo "setup: ready ($(.venv/bin/python -c 'import _gpaw, gpaw, torch; import gpaw.fftw; print("gpaw", gpaw.__version__, "FFTW" if gpaw.fftw.have_fftw() else "no FFTW", "BLAS" if hasattr(_gpaw, "mmm") else "no BLAS", "torch", torch.__version__)'))"
