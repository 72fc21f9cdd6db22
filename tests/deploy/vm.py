#!/usr/bin/env python3
"""`make vm`: boot the deploy test's Debian 12 machine and leave it running.

    tests/deploy/vm.py              boot it (with pebble as its ACME server)
    tests/deploy/vm.py --provision  boot it and run playbooks/site.yml on it
    tests/deploy/vm.py --stop       power it off and remove it, its network and pebble

Needs root and tests/deploy/host-setup.sh.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests import lifetime
from tests.deploy import machine


def vm_record() -> lifetime.Record:
    """Everything the machine consists of, recorded so that --stop finds it; test sessions never sweep it."""
    return lifetime.Record.named(machine.VM_RECORD, detached=True)


def start(provision: bool) -> int:
    record = vm_record()
    if record.path.exists():
        print(f"A machine is already running (see {record.path}); stop it with: {sys.argv[0]} --stop")
        return 1
    environment = machine.TestEnvironment(record=record)
    try:
        environment.start()
        assert environment.machine is not None and environment.pebble is not None and environment.zulip is not None
        record.add_process(keep_zulip_relay(environment.zulip))
        if provision:
            started = time.monotonic()
            result = environment.ansible_playbook("site.yml")
            print(result.stdout[-3000:])
            print(f"site.yml: exit {result.returncode} after {time.monotonic() - started:.0f} s")
    except BaseException:
        environment.stop()
        record.sweep()
        raise
    key = environment.machine.ssh_key
    repo = machine.REPO_ROOT
    print(f"""
The machine runs at {machine.GUEST_ADDRESS} (https://{machine.DOMAIN}), pebble at {environment.pebble.directory_url}.
  ssh:     ssh -i {key} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@{machine.GUEST_ADDRESS}
  ansible: cd {repo} && ANSIBLE_PRIVATE_KEY_FILE={key} LESSONBOT_TEST_ACME_CA={environment.pebble.tls_ca} \\
             .venv/bin/ansible-playbook -i inventory/test --vault-password-file tests/deploy/vault-password.txt playbooks/site.yml
  https:   curl --resolve {machine.DOMAIN}:443:{machine.GUEST_ADDRESS} -k https://{machine.DOMAIN}/health
  stop:    {sys.argv[0]} --stop
""")
    return 0


def keep_zulip_relay(zulip: machine.ZulipServer) -> int:
    """Hand the Zulip relay to a background process that outlives this one."""
    assert zulip.relay is not None
    zulip.relay.stop()
    child = os.fork()
    if child:
        return child
    # The child never returns into the caller's code (nor its clean-up).
    try:
        os.setsid()
        # Let go of the terminal or pipe this script was started with.
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        relay = machine.TcpRelay((machine.HOST_ADDRESS, machine.ZULIP_PORT), ("127.0.0.1", zulip.port))
        signal.signal(signal.SIGTERM, lambda *_: (relay.stop(), os._exit(0)))
        while True:
            signal.pause()
    finally:
        os._exit(1)


def stop() -> int:
    """Power the machine off (30 s, then SIGKILL) and remove its processes, network and root copy."""
    record = vm_record()
    if not record.path.exists():
        print("no machine from `make vm` is running")
        return 0
    record.sweep(grace=30)
    print("stopped and removed")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stop", action="store_true", help="stop and remove the machine")
    parser.add_argument("--provision", action="store_true", help="run playbooks/site.yml after boot")
    options = parser.parse_args()
    return stop() if options.stop else start(options.provision)


if __name__ == "__main__":
    sys.exit(main())
