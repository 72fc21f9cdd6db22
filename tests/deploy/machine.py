"""A throwaway Debian 12 machine for the deploy test, and the local ACME server.

The machine is a debootstrapped Debian 12 root (cached, rebuilt only when the
package list below changes) booted with ``systemd-nspawn -b`` inside a network
namespace of its own.  A veth pair joins that namespace to the host; the host
masquerades the machine's traffic so that apt and pip inside work, and runs
pebble (Debian's ACME test server) on the host end of the veth pair.

Everything here needs root and the packages that ``host-setup.sh`` installs.

Nothing here outlives a killed test run: the processes die with it and every
namespace, link, nft table and root copy is written into a lifetime record
(tests/lifetime.py) that the next session sweeps. `make vm` keeps its machine
in the record named ``vm``, which only `make vm-stop` undoes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests import lifetime

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("LESSONBOT_TEST_CACHE", "/var/cache/lessonbot-test"))
STATE_DIR = Path(os.environ.get("LESSONBOT_TEST_STATE", "/var/lib/lessonbot-test"))

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SECURITY_MIRROR = "http://deb.debian.org/debian-security"

# What a fresh cloud VM has, plus the Python build prerequisites that the app
# role would otherwise spend minutes installing on every test run.  Changing
# this list (or ROOTFS_FORMAT) rebuilds the cached root.
ROOTFS_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "libpam-systemd",
    "openssh-server",
    "sudo",
    "ca-certificates",
    "iproute2",
    "python3",
    "python3-apt",
    "python3-venv",
    "python3-dev",
    "build-essential",
)
ROOTFS_FORMAT = "1"

MACHINE_NAME = "lessonbot-test"
NETNS = "lessonbot-test"
VETH_HOST = "lbtest0"
VETH_GUEST = "lbtest1"
HOST_ADDRESS = "10.213.0.1"
GUEST_ADDRESS = "10.213.0.2"
PREFIX = 30
NFT_TABLE = "lessonbot_test"

# Must match inventory/test: the machine's name as pebble resolves it.
DOMAIN = "lessonbot.test"
PEBBLE_ACME_PORT = 14000
PEBBLE_MANAGEMENT_PORT = 15000
CHALLTESTSRV_DNS_PORT = 8053
CHALLTESTSRV_MANAGEMENT_PORT = 8055

# The repo's Zulip test server (tests/zulip_server) stands in for Zulip: it
# listens on the host's loopback and is relayed to the machine at
# HOST_ADDRESS:ZULIP_PORT (inventory/test sets LESSONBOT_ZULIP_SITE to it).
# The bot's credentials must match inventory/test/group_vars/all/vault.yml.
ZULIP_PORT = 9991
ZULIP_BOT_EMAIL = "bot@zulip.lessonbot.test"
ZULIP_BOT_KEY = "test-zulip-api-key-not-real"
OPS_STREAM = "lessonbot-ops"  # where the machine's alerts go (the app's default LESSONBOT_OPS_STREAM)

# The lifetime record of `make vm`'s machine (tests/deploy/vm.py).
VM_RECORD = "vm"
VM_BUSY = "a `make vm` machine is up and uses the deploy test's names: stop it with `make vm-stop`"


class MachineBusy(RuntimeError):
    """The fixed names (namespace, machine, addresses) are taken by `make vm`'s machine."""


def vm_is_up() -> bool:
    """Whether `make vm` left its machine running (until `make vm-stop`)."""
    return (lifetime.RUNS_DIR / VM_RECORD).exists()


def run(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run a host command, capturing its output as text; it dies if this process does."""
    if "input" not in kwargs:
        kwargs["stdin"] = subprocess.DEVNULL
    try:
        return lifetime.run(args, check=check, text=True, capture_output=True, **kwargs)
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"{' '.join(args)} failed ({error.returncode}):\n{error.stdout}\n{error.stderr}") from None


def rootfs_key() -> str:
    text = "\n".join((ROOTFS_FORMAT, DEBIAN_SUITE, *ROOTFS_PACKAGES))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cached_rootfs(log=print) -> Path:
    """Return the cached Debian root, building it with debootstrap if needed."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    rootfs = CACHE_DIR / f"rootfs-{rootfs_key()}"
    if (rootfs / ".complete").exists():
        return rootfs
    for stale in CACHE_DIR.glob("rootfs-*"):
        shutil.rmtree(stale, ignore_errors=True)
    building = Path(tempfile.mkdtemp(prefix="rootfs-build-", dir=CACHE_DIR))
    building.chmod(0o755)  # it becomes the machine's "/"
    log(f"building Debian {DEBIAN_SUITE} root in {building} (cached afterwards)")
    run(
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(ROOTFS_PACKAGES)}",
        DEBIAN_SUITE,
        str(building),
        DEBIAN_MIRROR,
    )
    (building / "etc/apt/sources.list").write_text(
        f"deb {DEBIAN_MIRROR} {DEBIAN_SUITE} main\n"
        f"deb {DEBIAN_MIRROR} {DEBIAN_SUITE}-updates main\n"
        f"deb {DEBIAN_SECURITY_MIRROR} {DEBIAN_SUITE}-security main\n"
    )
    (building / "etc/hostname").write_text("lessonbot-test\n")
    (building / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 lessonbot-test\n")
    # No console login prompt: nothing reads the container's console.
    run("chroot", str(building), "systemctl", "mask", "console-getty.service")
    run("chroot", str(building), "apt-get", "clean")
    (building / ".complete").write_text(rootfs_key() + "\n")
    building.rename(rootfs)
    return rootfs


@dataclass
class Network:
    """A network namespace joined to the host by a veth pair, with NAT."""

    record: lifetime.Record = field(default_factory=lifetime.this_process_record)

    def up(self) -> None:
        self.down()
        run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        run("ip", "netns", "add", NETNS)
        self.record.add_netns(NETNS)
        run("ip", "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_GUEST)
        self.record.add_link(VETH_HOST)
        run("ip", "link", "set", VETH_GUEST, "netns", NETNS)
        run("ip", "addr", "add", f"{HOST_ADDRESS}/{PREFIX}", "dev", VETH_HOST)
        run("ip", "link", "set", VETH_HOST, "up")
        in_ns = ("ip", "netns", "exec", NETNS)
        run(*in_ns, "ip", "addr", "add", f"{GUEST_ADDRESS}/{PREFIX}", "dev", VETH_GUEST)
        run(*in_ns, "ip", "link", "set", VETH_GUEST, "up")
        run(*in_ns, "ip", "link", "set", "lo", "up")
        run(*in_ns, "ip", "route", "add", "default", "via", HOST_ADDRESS)
        rules = f"""
table ip {NFT_TABLE} {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {GUEST_ADDRESS} oifname != "{VETH_HOST}" masquerade
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname "{VETH_HOST}" accept
        oifname "{VETH_HOST}" ct state established,related accept
    }}
}}
"""
        run("nft", "-f", "-", input=rules)
        self.record.add_nft_table("ip", NFT_TABLE)

    def down(self) -> None:
        run("nft", "delete", "table", "ip", NFT_TABLE, check=False)
        run("ip", "netns", "delete", NETNS, check=False)
        run("ip", "link", "delete", VETH_HOST, check=False)
        for kind, name in (("nft_table", NFT_TABLE), ("netns", NETNS), ("link", VETH_HOST)):
            self.record.forget(kind, name)


@dataclass
class Pebble:
    """Debian's pebble ACME server and its fake DNS, on the host end of the veth."""

    workdir: Path
    record: lifetime.Record = field(default_factory=lifetime.this_process_record)
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def tls_ca(self) -> Path:
        """The CA of pebble's own HTTPS endpoints (not of the certificates it issues)."""
        return self.workdir / "pebble-tls-ca.pem"

    @property
    def directory_url(self) -> str:
        return f"https://{HOST_ADDRESS}:{PEBBLE_ACME_PORT}/dir"

    def _make_tls_certificate(self) -> tuple[Path, Path]:
        key, csr, cert = (self.workdir / name for name in ("pebble.key", "pebble.csr", "pebble.pem"))
        ca_key = self.workdir / "pebble-tls-ca.key"
        run(
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=lessonbot deploy test pebble CA",
            "-keyout",
            str(ca_key),
            "-out",
            str(self.tls_ca),
        )
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=pebble", "-keyout", str(key), "-out", str(csr))
        extensions = self.workdir / "pebble.ext"
        extensions.write_text(f"subjectAltName=IP:{HOST_ADDRESS},DNS:pebble\n")
        run(
            "openssl",
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(self.tls_ca),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(extensions),
            "-out",
            str(cert),
        )
        return cert, key

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cert, key = self._make_tls_certificate()
        config = self.workdir / "pebble-config.json"
        config.write_text(
            json.dumps(
                {
                    "pebble": {
                        "listenAddress": f"{HOST_ADDRESS}:{PEBBLE_ACME_PORT}",
                        "managementListenAddress": f"{HOST_ADDRESS}:{PEBBLE_MANAGEMENT_PORT}",
                        "certificate": str(cert),
                        "privateKey": str(key),
                        "httpPort": 80,
                        "tlsPort": 443,
                        "ocspResponderURL": "",
                        "externalAccountBindingRequired": False,
                    }
                }
            )
        )
        log = (self.workdir / "pebble.log").open("w")
        self.processes.append(
            self.record.popen(
                [
                    "pebble-challtestsrv",
                    "-defaultIPv4",
                    GUEST_ADDRESS,
                    "-defaultIPv6",
                    "",
                    "-dns01",
                    f"{HOST_ADDRESS}:{CHALLTESTSRV_DNS_PORT}",
                    "-management",
                    f"{HOST_ADDRESS}:{CHALLTESTSRV_MANAGEMENT_PORT}",
                    "-http01",
                    "",
                    "-https01",
                    "",
                    "-tlsalpn01",
                    "",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        environment = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0")
        self.processes.append(
            self.record.popen(
                ["pebble", "-config", str(config), "-dnsserver", f"{HOST_ADDRESS}:{CHALLTESTSRV_DNS_PORT}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
            )
        )
        wait_for_port(HOST_ADDRESS, PEBBLE_ACME_PORT, timeout=30)
        wait_for_port(HOST_ADDRESS, PEBBLE_MANAGEMENT_PORT, timeout=30)

    def issuing_roots(self) -> str:
        """The PEM roots of the chains pebble issues (new ones every start)."""
        context = ssl.create_default_context(cafile=str(self.tls_ca))
        roots = []
        for index in range(3):
            url = f"https://{HOST_ADDRESS}:{PEBBLE_MANAGEMENT_PORT}/roots/{index}"
            try:
                with urllib.request.urlopen(url, context=context, timeout=10) as response:
                    roots.append(response.read().decode())
            except OSError:
                break
        return "".join(roots)

    def stop(self) -> None:
        for process in self.processes:
            self.record.stop(process)
        self.processes.clear()


class TcpRelay:
    """Forwards TCP connections from one address to another (threads)."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(listen, reuse_port=False)
        self.connections: list[socket.socket] = []
        self.stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="relay-accept").start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                continue
            self.connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        self.stopping.set()
        # shutdown() wakes the thread blocked in accept(); close() alone would not.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.close()


@dataclass
class ZulipServer:
    """tests/zulip_server on the host's loopback, relayed to HOST_ADDRESS."""

    workdir: Path
    record: lifetime.Record = field(default_factory=lifetime.this_process_record)
    process: subprocess.Popen | None = None
    relay: TcpRelay | None = None
    port: int = 0

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        credentials = self.workdir / "zulip.json"
        credentials.unlink(missing_ok=True)
        log = (self.workdir / "zulip.log").open("w")
        self.process = self.record.popen(
            [
                sys.executable,
                "-m",
                "tests.zulip_server",
                "--port",
                str(port),
                "--bot-email",
                ZULIP_BOT_EMAIL,
                "--bot-key",
                ZULIP_BOT_KEY,
                "--credentials-json",
                str(credentials),
                "--stream",
                OPS_STREAM,
                "--quiet",
            ],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not credentials.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Zulip test server did not start; see {self.workdir / 'zulip.log'}")
            time.sleep(0.2)
        self.port = port
        self.relay = TcpRelay((HOST_ADDRESS, ZULIP_PORT), ("127.0.0.1", port))

    def stop(self) -> None:
        if self.relay is not None:
            self.relay.stop()
            self.relay = None
        if self.process is not None:
            self.record.stop(self.process)
            self.process = None


@dataclass
class GoogleServer:
    """tests/google_server inside the machine's network namespace, on its loopback: the deployed app
    reaches it at 127.0.0.1:<port> as it would reach Google, and nothing outside the namespace can."""

    workdir: Path
    record: lifetime.Record = field(default_factory=lifetime.this_process_record)
    process: subprocess.Popen | None = None
    # What the server printed: url, token_uri, ca_file, client_id, client_secret, refresh_token,
    # account, scopes, drive_folder_id.
    banner: dict = field(default_factory=dict)

    def start(self, drive_folder: str) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        banner_file = self.workdir / "google.json"
        banner_file.unlink(missing_ok=True)
        log = (self.workdir / "google.log").open("w")
        self.process = self.record.popen(
            ["ip", "netns", "exec", NETNS, sys.executable, "-m", "tests.google_server", "--port", "0",
             "--drive-folder", drive_folder, "--credentials-json", str(banner_file)],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not banner_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Google test server did not start; see {self.workdir / 'google.log'}")
            time.sleep(0.2)
        self.banner = json.loads(banner_file.read_text())

    def stop(self) -> None:
        if self.process is not None:
            self.record.stop(self.process)
            self.process = None


@dataclass
class Machine:
    """The booted container, reachable over SSH at GUEST_ADDRESS."""

    workdir: Path
    record: lifetime.Record = field(default_factory=lifetime.this_process_record)
    process: subprocess.Popen | None = None
    # The container's init, (pid, start time) as the host sees it.
    container: list[tuple[int, int]] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.workdir / "root"

    @property
    def ssh_key(self) -> Path:
        return self.workdir / "id_ed25519"

    @property
    def console_log(self) -> Path:
        return self.workdir / "console.log"

    def prepare(self, rootfs: Path) -> None:
        """Copy the cached root and put the test-only bits into it."""
        if self.root.exists():
            shutil.rmtree(self.root)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Recorded before the copy: a run killed while copying leaves nothing either.
        self.root.mkdir()
        self.record.add_tree(self.root)
        run("cp", "-a", "--reflink=auto", f"{rootfs}/.", str(self.root))
        # Host keys of its own: the cached root's are the same for every machine made from it.
        for host_key in (self.root / "etc/ssh").glob("ssh_host_*"):
            host_key.unlink()
        run("chroot", str(self.root), "ssh-keygen", "-A")
        if not self.ssh_key.exists():
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lessonbot-deploy-test", "-f", str(self.ssh_key))
        ssh_dir = self.root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        shutil.copy(self.ssh_key.with_suffix(".pub"), ssh_dir / "authorized_keys")
        # Test only: the machine reaches the mirrors through the same
        # TLS-intercepting egress proxy as the host, so it trusts its CAs.
        for certificate in Path("/usr/local/share/ca-certificates").glob("*.crt"):
            shutil.copy(certificate, self.root / "usr/local/share/ca-certificates")
        run("chroot", str(self.root), "update-ca-certificates")
        shutil.copy("/etc/resolv.conf", self.root / "etc/resolv.conf")

    def boot(self, timeout: float = 120) -> None:
        log = self.console_log.open("w")
        self.process = self.record.popen(
            [
                "systemd-nspawn",
                "-b",
                "--register=no",
                "--keep-unit",
                f"--machine={MACHINE_NAME}",
                f"--directory={self.root}",
                f"--network-namespace-path=/run/netns/{NETNS}",
                "--capability=CAP_NET_ADMIN",
                "--resolv-conf=off",
                "--timezone=off",
                "--link-journal=no",
                "--console=read-only",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._record_container_init()
        deadline = time.monotonic() + timeout
        wait_for_port(GUEST_ADDRESS, 22, timeout=timeout)
        while self.ssh("systemctl is-system-running --wait", check=False).returncode not in (0, 1):
            if time.monotonic() > deadline:
                raise TimeoutError(f"machine did not boot; see {self.console_log}")
            time.sleep(1)

    def _record_container_init(self) -> None:
        """The container's systemd survives a killed nspawn: record it, so that the sweep ends the
        container (everything in its pid namespace dies with it)."""
        assert self.process is not None
        deadline = time.monotonic() + 30
        while not (found := [pid for pid in lifetime.children(self.process.pid) if _in_other_pid_namespace(pid)]):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"systemd-nspawn started no container; see {self.console_log}")
            time.sleep(0.02)
        for pid in found:
            self.record.add_process(pid, terminate=False)
            if (started := lifetime.start_time(pid)) is not None:
                self.container.append((pid, started))

    def ssh_options(self) -> list[str]:
        return [
            "-i",
            str(self.ssh_key),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
        ]

    def ssh(self, command: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run a shell command on the machine as root."""
        return run("ssh", *self.ssh_options(), f"root@{GUEST_ADDRESS}", command, check=check, timeout=timeout)

    def stop(self) -> None:
        if self.process is not None:
            # SIGTERM asks systemd inside to power off; SIGKILL if it dawdles.
            self.record.stop(self.process, grace=30)
            self.process = None
        for pid, started in self.container:  # left running if nspawn had to be killed
            if lifetime.running(pid, started):
                os.kill(pid, signal.SIGKILL)
            self.record.forget("process", str(pid))
        self.container.clear()

    def remove(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)
        self.record.forget("tree", str(self.root))


def _in_other_pid_namespace(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    except FileNotFoundError:
        return False


def _press_ctrl_c(process: subprocess.Popen, presses: int = 3, patience: float = 5) -> None:
    """Ctrl-C to the process group, as an operator presses it: once more when the first does
    not end the run in a few seconds (ansible-playbook sometimes waits on a worker), then SIGKILL."""
    for _ in range(presses):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=patience)
            return
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def ansible_playbook_command() -> str:
    """ansible-playbook next to the running Python (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.exists() else (shutil.which("ansible-playbook") or "ansible-playbook")


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{host}:{port} did not open within {timeout:.0f} s") from None
            time.sleep(0.5)


@dataclass
class TestEnvironment:
    """Network, pebble and machine together: what both the test and `make vm` start."""

    workdir: Path = STATE_DIR
    # Where what it starts is recorded; `make vm` passes its own, detached one.
    record: lifetime.Record = field(default_factory=lifetime.this_process_record)
    network: Network | None = None
    pebble: Pebble | None = None
    zulip: ZulipServer | None = None
    machine: Machine | None = None
    # Extra environment for ansible-playbook (the test's release snapshot).
    extra_env: dict[str, str] = field(default_factory=dict)
    # When the machine finished booting (time.monotonic()).
    booted_at: float = 0.0

    def start(self, log=print) -> None:
        if self.record.path.name != VM_RECORD and vm_is_up():
            raise MachineBusy(VM_BUSY)
        self.workdir.mkdir(parents=True, exist_ok=True)
        rootfs = cached_rootfs(log)
        self.network = Network(self.record)
        self.network.up()
        self.pebble = Pebble(self.workdir / "pebble", self.record)
        self.pebble.start()
        self.zulip = ZulipServer(self.workdir / "zulip", self.record)
        self.zulip.start()
        self.machine = Machine(self.workdir / "machine", self.record)
        self.machine.prepare(rootfs)
        self.machine.boot()

    def stop(self) -> None:
        if self.machine is not None:
            self.machine.stop()
            self.machine.remove()
        if self.pebble is not None:
            self.pebble.stop()
        if self.zulip is not None:
            self.zulip.stop()
        if self.network is not None:
            self.network.down()

    def ansible_environment(self) -> dict[str, str]:
        """Environment for ansible-playbook against the test inventory."""
        assert self.machine is not None and self.pebble is not None
        return dict(
            os.environ,
            ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"),
            ANSIBLE_PRIVATE_KEY_FILE=str(self.machine.ssh_key),
            ANSIBLE_VAULT_PASSWORD_FILE=str(REPO_ROOT / "tests/deploy/vault-password.txt"),
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_NOCOLOR="1",
            LESSONBOT_TEST_ACME_CA=str(self.pebble.tls_ca),
            **self.extra_env,
        )

    def playbook_command(self, playbook: str, *extra: str) -> list[str]:
        return [
            ansible_playbook_command(),
            "-i",
            str(REPO_ROOT / "inventory/test"),
            str(REPO_ROOT / "playbooks" / playbook),
            *extra,
        ]

    def ansible_playbook(
        self, playbook: str, *extra: str, timeout: float = 1200, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """Run a playbook from playbooks/ against the test machine (env: more environment); output is kept."""
        result = lifetime.run(
            self.playbook_command(playbook, *extra),
            cwd=REPO_ROOT,
            env={**self.ansible_environment(), **(env or {})},
            text=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
        )
        self._keep_log(playbook, result.stdout + result.stderr)
        return result

    def ansible_playbook_interrupted(self, playbook: str, at_line: str, *extra: str, timeout: float = 600) -> str:
        """Run a playbook and press Ctrl-C (SIGINT to its process group) as soon as it prints a line
        starting with at_line; its output. Fails if the line never comes."""
        process = self.record.popen(
            self.playbook_command(playbook, *extra),
            cwd=REPO_ROOT,
            env=self.ansible_environment(),
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert process.stdout is not None
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        lines, interrupted = [], False
        try:
            for line in process.stdout:
                lines.append(line)
                if not interrupted and line.startswith(at_line):
                    threading.Thread(target=_press_ctrl_c, args=(process,), daemon=True).start()
                    interrupted = True
            process.wait()
        finally:
            timer.cancel()
            self.record.stop(process)
        output = "".join(lines)
        self._keep_log(playbook, output)
        if not interrupted:
            raise RuntimeError(f"{playbook} never printed {at_line!r}:\n{output[-3000:]}")
        return output

    def _keep_log(self, playbook: str, output: str) -> None:
        log_path = self.workdir / f"ansible-{playbook.replace('.yml', '')}-{time.time():.3f}.log"
        log_path.write_text(output)
