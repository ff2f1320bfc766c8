#!/usr/bin/env bash
# Set up everything the workbook needs, idempotently: a venv with requirements.txt and the helper
# package, and the verified Fashion-MNIST files. Re-running it only redoes what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha256"
if command -v sha256sum >/dev/null 2>&1; then HASH="sha256sum"; else HASH="shasum -a 256"; fi  # macOS: shasum
wanted="$(cat requirements.txt pyproject.toml | $HASH | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "== installing requirements.txt and fmnist_helpers into $VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r requirements.txt -e .
  echo "$wanted" > "$stamp"
fi

if ! "$VENV/bin/python" -m fmnist_helpers.data >/dev/null 2>&1; then
  installed=no
  if command -v apt-get >/dev/null 2>&1; then
    echo "== installing the Debian package dataset-fashion-mnist"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    if $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
    then
      installed=yes
    else
      echo "== the Debian package could not be installed (no sudo, or no such package here)"
    fi
  fi
  if [ "$installed" = no ]; then
    echo "== downloading Fashion-MNIST from the official source into data/"
    "$VENV/bin/python" -m fmnist_helpers.data --download
  fi
fi
"$VENV/bin/python" -m fmnist_helpers.data
