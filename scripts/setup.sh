#!/usr/bin/env bash
# Create .venv/ at the repo root and install nas-dil into it. Idempotent: a second run only
# checks. `--dev` adds the test tools (pytest, hypothesis, ruff, mypy), torchvision and timm
# (the backbone tests run, never skip); `--vision` adds torchvision alone (`[arch] backbone`),
# `--timm` timm and torchvision (`[arch] backbone = "timm:<name>"`).
#
# torch: an importable torch is kept as it is (a cluster's CUDA build: create the venv with
# NAS_DIL_SYSTEM_SITE=1 to see the system's packages, or set NAS_DIL_TORCH to the pip
# requirement to install, e.g. NAS_DIL_TORCH="torch==2.13.0+cu128 --index-url <your index>").
# Otherwise the CPU build torch==2.13.0 is installed (a local wheel on the dev machines).
#
# torchvision (--dev, --vision, --timm): its compiled ops must match torch exactly. Kept when
# `import torchvision` works; otherwise NAS_DIL_VISION is installed, by default
# "torch==2.14.1 torchvision==0.29.1" (the only pair whose wheels are here and run on CPU:
# the torchvision 0.28 wheel is built against CUDA torch 2.13 and fails to import on the
# 2.13.0+cpu build). A cluster names its own pair from one index, e.g.
# NAS_DIL_VISION="torch==2.14.1 torchvision==0.29.1 --index-url <your CUDA index>".
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
vision=""
case "${1:-}" in
  --dev) extras="[dev,vision,timm]"; vision=1 ;;
  --vision) extras="[vision]"; vision=1 ;;
  --timm) extras="[timm]"; vision=1 ;;
  "") ;;
  *) echo "setup.sh: unknown option ${1}; use --dev, --vision or --timm" >&2; exit 2 ;;
esac
py="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
  if [ -n "${NAS_DIL_SYSTEM_SITE:-}" ]; then
    "$py" -m venv --system-site-packages .venv
  else
    "$py" -m venv .venv
  fi
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

if [ -n "$vision" ] && ! .venv/bin/python -c "import torchvision" >/dev/null 2>&1; then
  # one pip call for the pair, so pip never pairs a torchvision with another torch
  # shellcheck disable=SC2086  # NAS_DIL_VISION may carry pip options
  "${pip[@]}" ${NAS_DIL_VISION:-torch==2.14.1 torchvision==0.29.1}
elif ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  # shellcheck disable=SC2086  # NAS_DIL_TORCH may carry pip options
  "${pip[@]}" ${NAS_DIL_TORCH:-torch==2.13.0}
fi
# stamp: skip the editable install when pyproject.toml has not changed since the last one
stamp=".venv/.nas-dil-installed${extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "${pip[@]}" -e ".${extras}"
  touch "$stamp"
fi

# --dev: the dashboard's browser test drives Debian's headless `chromium`; install it when it
# is missing and we can (root, apt-get). Elsewhere that test skips and says why.
if [ "${1:-}" = "--dev" ] && ! command -v chromium >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
           chromium fonts-dejavu-core >/dev/null; } \
    || echo "setup.sh: could not install chromium; the browser test will skip" >&2
fi

# --dev: the search's PostgreSQL storage test starts a throw-away server from Debian's
# `postgresql` (initdb/pg_ctl under /usr/lib/postgresql/*/bin); install it when it is missing
# and we can (root, apt-get). Elsewhere that test skips and says why.
if [ "${1:-}" = "--dev" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
           postgresql >/dev/null; } \
    || echo "setup.sh: could not install postgresql; the PostgreSQL test will skip" >&2
fi

# --dev: the cluster templates' test runs Debian's `shellcheck` on scripts/cluster/slurm.sbatch;
# install it when it is missing and we can (root, apt-get). Elsewhere that test skips.
if [ "${1:-}" = "--dev" ] && ! command -v shellcheck >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
           shellcheck >/dev/null; } \
    || echo "setup.sh: could not install shellcheck; the SLURM template check will skip" >&2
fi
