#!/bin/sh
# Install what the deploy test (tests/deploy/) needs on the host: a way to build
# and boot a throwaway Debian 12 machine, a network namespace with NAT for it,
# a local ACME server (pebble) and an SSH client. Idempotent; runs as root
# without a terminal (CI).
set -eu

packages="
  debootstrap
  systemd-container
  iproute2
  nftables
  iptables
  pebble
  openssh-client
  openssl
  curl
  ca-certificates
  git
  rsync
"

if [ "$(id -u)" -ne 0 ]; then
    echo "host-setup.sh: run as root (it installs Debian packages)" >&2
    exit 1
fi

missing=""
for package in $packages; do
    if ! dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q 'ok installed'; then
        missing="$missing $package"
    fi
done

if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086  # word splitting of the package list is wanted
    apt-get install -q -y --no-install-recommends $missing
fi

# pebble is started by the test itself; Debian's package must not run its own.
if systemctl list-unit-files pebble.service >/dev/null 2>&1; then
    systemctl disable --now pebble.service >/dev/null 2>&1 || true
fi

# The machine reaches package mirrors through the host: forward its traffic.
sysctl -q -w net.ipv4.ip_forward=1

echo "host-setup.sh: deploy-test prerequisites are installed"
