#!/usr/bin/env python3
"""`make vm`: boot the deploy test's Debian 12 machine and leave it running.

    tests/deploy/vm.py              boot it (with pebble as its ACME server)
    tests/deploy/vm.py --provision  boot it and run playbooks/site.yml on it
    tests/deploy/vm.py --stop       power it off and remove it, its network and pebble

Needs root and tests/deploy/host-setup.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.deploy import machine

STATE_FILE = machine.STATE_DIR / "vm.json"


def start(provision: bool) -> int:
    if STATE_FILE.exists():
        print(f"A machine is already running (see {STATE_FILE}); stop it with: {sys.argv[0]} --stop")
        return 1
    environment = machine.TestEnvironment()
    try:
        environment.start()
        assert environment.machine is not None and environment.pebble is not None
        assert environment.zulip is not None and environment.zulip.process is not None
        pids = [environment.machine.process.pid] + [p.pid for p in environment.pebble.processes]
        pids += [environment.zulip.process.pid, keep_zulip_relay(environment.zulip)]
        STATE_FILE.write_text(
            json.dumps({"pids": pids, "ssh_key": str(environment.machine.ssh_key), "acme_ca": str(environment.pebble.tls_ca)})
        )
        if provision:
            started = time.monotonic()
            result = environment.ansible_playbook("site.yml")
            print(result.stdout[-3000:])
            print(f"site.yml: exit {result.returncode} after {time.monotonic() - started:.0f} s")
    except BaseException:
        environment.stop()
        STATE_FILE.unlink(missing_ok=True)
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
    if STATE_FILE.exists():
        state = json.loads(STATE_FILE.read_text())
        for pid in state["pids"]:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 30
        for pid in state["pids"]:
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.5)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    machine.Network().down()
    machine.Machine(machine.STATE_DIR / "machine").remove()
    STATE_FILE.unlink(missing_ok=True)
    print("stopped and removed")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stop", action="store_true", help="stop and remove the machine")
    parser.add_argument("--provision", action="store_true", help="run playbooks/site.yml after boot")
    options = parser.parse_args()
    return stop() if options.stop else start(options.provision)


if __name__ == "__main__":
    sys.exit(main())
