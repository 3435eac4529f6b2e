#!/usr/bin/env bash
# Installs the Debian packages the project needs, once (idempotent). Usage: system-deps.sh run|test
#   run:  espeak-ng (the mini world's offline TTS), libsndfile1, sox
#   test: the above + chromium (browser tests) + postgresql (store tests on PostgreSQL)
set -euo pipefail
want=(espeak-ng libsndfile1 sox)
if [[ "${1:-run}" == "test" ]]; then want+=(chromium chromium-driver postgresql); fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then exit 0; fi
echo "installing system packages: ${missing[*]}"
SUDO=""
if [[ $(id -u) != 0 ]]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "error: need root or sudo to install: ${missing[*]}" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
