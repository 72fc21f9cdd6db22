#!/bin/bash
# Install the Debian packages a make target needs, only those missing.
# Usage: .ci/system-deps.sh demo|test|bench
set -euo pipefail

declare -A PACKAGES=(
  [demo]="git gcc python3-dev python3-venv"
  [test]="git gcc python3-dev python3-venv postgresql age nginx-light fcgiwrap openssl chromium chromium-driver"
  [bench]="git gcc python3-dev python3-venv postgresql age nginx-light wrk"
)
target="${1:?usage: $0 demo|test|bench}"
missing=()
for package in ${PACKAGES[$target]}; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "Please install as root: apt-get install ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The test suite runs its own throwaway clusters; the packaged one need not run.
if [[ " ${missing[*]} " == *" postgresql "* ]]; then
  $SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true
fi
