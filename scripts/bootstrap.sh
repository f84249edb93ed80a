#!/usr/bin/env bash
# Idempotent setup for a fresh machine: system packages, a virtual environment in .venv,
# the CPU build of torch, and this package with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
# espeak-ng: the synthetic corpus; chromium + chromium-driver: the web page's browser test
# (Selenium drives Debian's chromedriver); fonts-wqy-zenhei: Chinese glyphs in that browser
SYSTEM_PACKAGES="espeak-ng chromium chromium-driver fonts-wqy-zenhei"
missing=""
for pkg in $SYSTEM_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# the CPU build; a bare "torch" would pull a multi-GB CUDA build
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[serve,dev]"
