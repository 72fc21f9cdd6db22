"""Nothing the tests start outlives them, even when the run is killed with SIGKILL.

A CI timeout kills `make test` without a chance to clean up, and whatever the run
started (PostgreSQL, the Zulip test server, pebble, a booted nspawn machine, a
network namespace, an nft table) would then poison the next run. Two mechanisms:

1. **Children die with their parent.** `popen()` starts a child with
   `PR_SET_PDEATHSIG(SIGKILL)`, so the kernel kills it when the process that
   started it dies, however it dies. `die_with_parent()` does the same for the
   pytest process itself, so killing `make` kills pytest and, through it, every
   child. Caveats from prctl(2) that shape the code: the signal is cleared when
   the uid or gid changes (so a child that runs as another user changes its
   credentials first, through Popen's `user=`/`group=`, which run before
   `preexec_fn`), it is not inherited across fork (so a server must stay our
   direct child: `postgres -D …`, never `pg_ctl start`), and "the parent" is the
   *thread* that started the child (so every tied child is started by one
   spawner thread that lives as long as the process, whichever thread asks).

2. **A record of what cannot die by itself**, swept by the next session. Every
   process that starts something records it in `RUNS_DIR/<pid>-<start time>/`
   (`/tmp/lessonbot-tests/<uid>/…`),
   one small JSON file per item, with an identity that a later re-creation under
   the same name cannot have (process start time, inode, nft handle, ifindex).
   At the start of every test session `sweep_dead()` undoes the records whose
   owner is no longer running: it kills their processes, deletes their network
   namespaces, links and nft tables, and removes their directories. A record
   whose owner runs is never touched (other checkouts may run the suite at the
   same time), nor the one named `vm`, which `make vm` owns until `make vm-stop`.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# One directory per user: a record must be writable (and renamable) by its owner only.
RUNS_DIR = Path(os.environ.get("LESSONBOT_TEST_RUNS_DIR", f"/tmp/lessonbot-tests/{os.geteuid()}"))
OWNER_FILE = "owner.json"
TREE_XATTR = "user.lessonbot-test-record"
PR_SET_PDEATHSIG = 1
# Undo in this order: processes hold namespaces and files open.
SWEEP_ORDER = ("process", "link", "netns", "nft_table", "tree")

_libc = ctypes.CDLL(None, use_errno=True)



def write_whole(path: Path, data: object) -> None:
    """Write `data` as JSON so that a reader polling for `path` sees all of it or nothing (0600: it may hold keys)."""
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(json.dumps(data))
    partial.replace(path)

def set_pdeathsig(signum: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `signum` to this process when its parent (thread) dies."""
    if _libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks after boot), None if it is gone or a zombie.

    A pid alone may be reused by an unrelated process; pid and start time are not.
    """
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22, starttime


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, start time) of every running process below `pid`, children first."""
    found: list[tuple[int, int]] = []
    for child in children(pid):
        started = start_time(child)
        if started is not None:
            found += [(child, started), *descendants(child)]
    return found


def running(pid: int, started: int) -> bool:
    """Whether the process that started at `started` still runs under `pid`."""
    return start_time(pid) == started


def _exit_with_parent(parent: int) -> Callable[[], None]:
    def preexec() -> None:
        set_pdeathsig()
        if os.getppid() != parent:  # the parent died before prctl: no signal will come
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


# PR_SET_PDEATHSIG fires when the parent *thread* ends, not the process: a worker restarted
# from a short-lived test thread would be killed as soon as that thread returns. Every tied
# child is therefore started by this one thread, which lives as long as the process.
_SPAWNER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="lifetime-spawner")


def _tied(kwargs: dict[str, Any]) -> dict[str, Any]:
    if "preexec_fn" in kwargs:
        raise TypeError("lifetime.popen sets preexec_fn itself")
    # Popen changes user= / group= before it calls preexec_fn, so the signal survives them.
    return {**kwargs, "preexec_fn": _exit_with_parent(os.getpid())}


def run(args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """subprocess.run whose child is killed if this process dies meanwhile."""
    return subprocess.run(args, **_tied(kwargs))


def popen(args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """subprocess.Popen whose child dies with this process, recorded for the sweep."""
    return this_process_record().popen(args, **kwargs)


def die_with_parent() -> None:
    """Let this process (pytest) die with the process that started it (make, a CI step).

    Exits at once if that process is already gone: its death may have come
    before this call, and then no signal will.
    """
    parent = os.getppid()
    set_pdeathsig()
    if os.getppid() != parent or _orphaned():
        sys.stderr.write("lessonbot tests: the process that started this run is gone; stopping\n")
        os._exit(1)


def _orphaned() -> bool:
    """The job that started us died before we could ask for PDEATHSIG.

    Then the leader of our process group (make, or the shell of the CI step) is
    gone and we were handed to init or a subreaper outside our group.
    """
    group = os.getpgrp()
    if group == os.getpid() or start_time(group) is not None:
        return False
    try:
        return os.getpgid(os.getppid()) != group
    except ProcessLookupError:
        return True


def _runs_dir() -> Path:
    """RUNS_DIR, refused unless only we can write to it.

    Otherwise another user could rename a running session's record to a dead
    owner's name and have our next sweep kill that session's servers.
    """
    if not RUNS_DIR.exists():
        shared = RUNS_DIR.parent
        if not shared.exists():
            shared.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(PermissionError):
                shared.chmod(0o1777)  # every user's runs directory lives here, as in /tmp
        RUNS_DIR.mkdir(exist_ok=True)
    info = RUNS_DIR.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise RuntimeError(f"{RUNS_DIR} must be a directory of uid {os.geteuid()}: remove it")
    if stat.S_IMODE(info.st_mode) != 0o755:
        RUNS_DIR.chmod(0o755)  # ours alone to write; servers running as another user (postgres) pass through
    return RUNS_DIR


@dataclass
class Record:
    """What one owner started or created that must not outlive it.

    `detached` is for `make vm`: its processes outlive the script that starts
    them, and only a sweep of the record (`make vm-stop`) stops them.
    """

    path: Path
    detached: bool = False

    @classmethod
    def named(cls, name: str, detached: bool = False) -> Record:
        return cls(_runs_dir() / name, detached)

    def _create(self) -> None:
        if not self.path.exists():
            self.path.mkdir(mode=0o755)
            self.path.chmod(0o755)  # servers running as another user (postgres) reach their directories here
            owner = {"pid": os.getpid(), "argv": sys.argv, "cwd": os.getcwd(), "created": time.time()}
            (self.path / OWNER_FILE).write_text(json.dumps(owner))

    def _write(self, kind: str, name: str, identity: dict[str, Any]) -> None:
        self._create()
        write_whole(self._entry_path(kind, name), {"kind": kind, "name": name, **identity})

    def _entry_path(self, kind: str, name: str) -> Path:
        return self.path / f"{kind}-{hashlib.sha256(name.encode()).hexdigest()[:16]}.json"

    def forget(self, kind: str, name: str) -> None:
        """Drop an entry once its owner has undone it the ordinary way."""
        self._entry_path(kind, name).unlink(missing_ok=True)

    def entries(self) -> list[dict[str, Any]]:
        found = []
        for path in self.path.glob("*.json"):
            if path.name != OWNER_FILE:
                with contextlib.suppress(OSError, ValueError):
                    found.append(json.loads(path.read_text()))
        return sorted(found, key=lambda entry: SWEEP_ORDER.index(entry["kind"]))

    # What can be recorded.

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a child (tied to this process unless the record is detached) and record it."""
        if self.detached:
            process = subprocess.Popen(args, **kwargs)
        else:
            process = _SPAWNER.submit(lambda: subprocess.Popen(args, **_tied(kwargs))).result()
        self.add_process(process.pid)
        return process

    def add_process(self, pid: int, terminate: bool = True) -> None:
        """Record a running process; the sweep kills its process group if it leads one.

        `terminate=False`: a sweep with a grace period does not send it SIGTERM
        (systemd in a container powers off when nspawn asks, not on SIGTERM).
        """
        started = start_time(pid)
        if started is not None:
            self._write("process", str(pid), {"start": started, "terminate": terminate})

    def stop(self, process: subprocess.Popen[Any], grace: float = 10.0, signum: int = signal.SIGTERM) -> None:
        """Stop a child the ordinary way (`signum`, then SIGKILL to its group after `grace`) and forget it."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.forget("process", str(process.pid))

    def tempdir(self, prefix: str) -> Path:
        """A new directory inside the record: removed with it if its owner dies."""
        self._create()
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.path))

    def add_tree(self, path: Path) -> None:
        """Record a directory elsewhere (the machine's root): the sweep removes it if it is still that one.

        Marked with an extended attribute naming the record: a directory made
        again under the same path often gets the same inode number.
        """
        marker = self.path.name
        try:
            os.setxattr(path, TREE_XATTR, marker.encode())
        except OSError:  # no user xattrs on this file system: the inode number will have to do
            marker = ""
        info = path.lstat()
        self._write("tree", str(path), {"dev": info.st_dev, "ino": info.st_ino, "marker": marker})

    def add_netns(self, name: str) -> None:
        self._write("netns", name, {"ino": Path(f"/run/netns/{name}").stat().st_ino})

    def add_link(self, name: str) -> None:
        self._write("link", name, {"ifindex": int(Path(f"/sys/class/net/{name}/ifindex").read_text())})

    def add_nft_table(self, family: str, name: str) -> None:
        self._write("nft_table", name, {"family": family, "handle": _nft_table_handle(family, name)})

    # Undoing it all.

    def sweep(self, grace: float = 0.0) -> None:
        """Undo every entry that still is what was recorded, then remove the directory.

        With `grace`, processes get SIGTERM and that long to stop before SIGKILL.
        """
        entries = self.entries()
        processes = [entry for entry in entries if entry["kind"] == "process"]
        # A machine's init leads a PID namespace; the kernel kills the rest of it when init
        # dies, but not at once: wait for the namespace to empty, so the next run starts clean.
        namespaces = {_pid_namespace(pid) for pid, started in map(_identity, processes) if running(pid, started)}
        namespaces -= {_pid_namespace(os.getpid()), ""}
        if grace:
            _signal_running([_identity(entry) for entry in processes if entry.get("terminate", True)], signal.SIGTERM)
            _wait_gone([_identity(entry) for entry in processes], grace)
        _signal_running([_identity(entry) for entry in processes], signal.SIGKILL)
        _wait_gone([_identity(entry) for entry in processes], 5.0)
        deadline = time.monotonic() + 10.0
        while namespaces and any(_pid_namespace_members(ns) for ns in namespaces) and time.monotonic() < deadline:
            time.sleep(0.05)
        for entry in entries:
            if entry["kind"] != "process":
                with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError, KeyError):
                    UNDO[entry["kind"]](entry)
        shutil.rmtree(self.path, ignore_errors=True)


def _pid_namespace(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


def _pid_namespace_members(namespace: str) -> list[int]:
    pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    return [pid for pid in pids if _pid_namespace(pid) == namespace]


def _kill(pid: int, signum: int) -> None:
    """Signal the process group `pid` leads, else the process alone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


def _kill_orphaned_group(pid: int, signum: int) -> None:
    """Signal what is left of the process group a recorded process led, after it died.

    A wrapper that made itself a group leader (``timeout``, a shell with ``setsid``) is what
    PDEATHSIG kills; the command under it lives on in its group. The kernel never gives a
    process the id of a group that still has members, so a group with the dead leader's id
    can only be that leader's own.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _identity(entry: dict[str, Any]) -> tuple[int, int]:
    return int(entry["name"]), int(entry["start"])


def _signal_running(processes: list[tuple[int, int]], signum: int) -> None:
    for pid, started in processes:
        if running(pid, started):
            _kill(pid, signum)
        elif start_time(pid) is None:  # gone, and its pid not given to another process
            _kill_orphaned_group(pid, signum)


def _wait_gone(processes: list[tuple[int, int]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(running(*process) for process in processes) and time.monotonic() < deadline:
        time.sleep(0.05)


def _nft_table_handle(family: str, name: str) -> int:
    listing = subprocess.run(["nft", "-j", "list", "table", family, name], check=True, capture_output=True, text=True)
    for item in json.loads(listing.stdout)["nftables"]:
        if "table" in item:
            return int(item["table"]["handle"])
    raise ValueError(f"nft table {family} {name} not listed")


def _undo_tree(entry: dict[str, Any]) -> None:
    path = Path(entry["name"])
    info = path.lstat()
    if (info.st_dev, info.st_ino) != (entry["dev"], entry["ino"]):
        return
    if entry["marker"] and os.getxattr(path, TREE_XATTR, follow_symlinks=False).decode() != entry["marker"]:
        return
    shutil.rmtree(path, ignore_errors=True)


def _undo_netns(entry: dict[str, Any]) -> None:
    if Path(f"/run/netns/{entry['name']}").stat().st_ino == entry["ino"]:
        subprocess.run(["ip", "netns", "delete", entry["name"]], check=True, capture_output=True)


def _undo_link(entry: dict[str, Any]) -> None:
    if int(Path(f"/sys/class/net/{entry['name']}/ifindex").read_text()) == entry["ifindex"]:
        subprocess.run(["ip", "link", "delete", entry["name"]], check=True, capture_output=True)


def _undo_nft_table(entry: dict[str, Any]) -> None:
    family = entry["family"]
    if _nft_table_handle(family, entry["name"]) == entry["handle"]:
        subprocess.run(["nft", "delete", "table", family, "handle", str(entry["handle"])], check=True, capture_output=True)


UNDO: dict[str, Callable[[dict[str, Any]], None]] = {
    "tree": _undo_tree,
    "netns": _undo_netns,
    "link": _undo_link,
    "nft_table": _undo_nft_table,
}


def owner_of(path: Path) -> tuple[int, int] | None:
    """(pid, start time) of a session record's owner; None for a named record (`vm`)."""
    pid, _, started = path.name.partition("-")
    if not (pid.isdigit() and started.isdigit()):
        return None
    return int(pid), int(started)


def sweep_dead(runs_dir: Path = RUNS_DIR) -> list[Path]:
    """Undo the records of owners that are gone; returns the records swept.

    Only records of our own user: another user's are theirs to sweep (and
    running their record as root would trust files they wrote).
    """
    if not runs_dir.is_dir():
        return []
    swept = []
    for path in sorted(runs_dir.iterdir()):
        owner = owner_of(path)
        with contextlib.suppress(FileNotFoundError):
            if owner is None or running(*owner) or path.lstat().st_uid != os.geteuid() or not path.is_dir():
                continue
            Record(path).sweep()
            swept.append(path)
    return swept


_this_process: Record | None = None


def this_process_record() -> Record:
    """This process's record, created on first use and swept when the process exits normally."""
    global _this_process
    pid = os.getpid()
    if _this_process is None or owner_of(_this_process.path) != (pid, start_time(pid)):
        started = start_time(pid)
        assert started is not None
        _this_process = Record.named(f"{pid}-{started}")
        atexit.register(_sweep_at_exit, _this_process, pid)
    return _this_process


def _sweep_at_exit(record: Record, pid: int) -> None:
    if os.getpid() == pid:  # not in a forked child that inherited the handler
        record.sweep()
