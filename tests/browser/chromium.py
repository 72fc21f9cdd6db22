"""Debian's chromium, driven by Debian's chromedriver through Selenium, tied to the test run.

Nothing of it may outlive the run, even a SIGKILLed one. chromedriver is started here through
`lifetime.popen` (not by Selenium's Service, a plain Popen), so it dies with pytest, and
Selenium connects to it. chromium is chromedriver's child, and a child does not inherit
PR_SET_PDEATHSIG, so chromium is started through a two-line wrapper that asks for it again
(`setpriv --pdeathsig KILL`): it dies with chromedriver, and its helper processes (zygotes,
renderers) end with it. tests/browser/test_chromium.py kills a run and checks. Profile, HOME
and logs live in a directory of the run's record, which the next session removes if this
one was killed.

The browser trusts the HTTPS servers of the tests by their keys alone: each certificate's
public key goes into ``--ignore-certificate-errors-spki-list``, so certificate errors are
ignored for exactly those keys and no other site.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from selenium import webdriver
from selenium.webdriver.chromium.remote_connection import ChromiumRemoteConnection
from selenium.webdriver.remote.webdriver import WebDriver

from tests import lifetime
from tests.pg import free_port
from tests.stack import STACK_MARKER, leftover_processes

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
DESKTOP = (1280, 900)
PHONE = (375, 812)
TIED_CHROMIUM = f"""#!/bin/sh
# chromium dies with chromedriver, whatever kills it (see tests/browser/chromium.py)
exec setpriv --pdeathsig KILL {CHROMIUM} "$@"
"""


def spki_hash(certificate: Path) -> str:
    """The base64 SHA-256 of a certificate's public key, as chromium's SPKI list wants it."""
    loaded = x509.load_pem_x509_certificate(certificate.read_bytes())
    der = loaded.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def _options(root: Path, trusted: Sequence[Path]) -> webdriver.ChromeOptions:
    wrapper = root / "chromium"
    wrapper.write_text(TIED_CHROMIUM)
    wrapper.chmod(0o755)
    options = webdriver.ChromeOptions()
    options.binary_location = str(wrapper)
    for argument in (
        "--headless=new", f"--window-size={DESKTOP[0]},{DESKTOP[1]}", f"--user-data-dir={root / 'profile'}",
        "--no-sandbox",  # CI runs the suite as root, where chromium's sandbox refuses to start
        "--disable-dev-shm-usage", "--no-first-run", "--lang=en-US",
    ):
        options.add_argument(argument)
    if trusted:
        options.add_argument(f"--ignore-certificate-errors-spki-list={','.join(spki_hash(path) for path in trusted)}")
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    return options


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"chromedriver exited with {process.returncode} during start-up")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"chromedriver did not listen on port {port} within {timeout:g} s")
        time.sleep(0.05)


@contextlib.contextmanager
def running_browser(trusted: Sequence[Path] = ()) -> Iterator[WebDriver]:
    """Headless chromium at desktop size; HTTPS servers whose certificates are in `trusted` are accepted.

    chromedriver and chromium carry ``LESSONBOT_STACK=<their directory>`` in their environment, so
    `tests.stack.leftover_processes` finds any that survived; stopping fails if one does.
    """
    record = lifetime.this_process_record()
    root = record.tempdir("browser-")
    port = free_port()
    environment = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(root), "LANG": "C.UTF-8",
                   STACK_MARKER: str(root)}
    log = open(root / "chromedriver.log", "wb")  # noqa: SIM115 - owned by the process
    driver_process = lifetime.popen([CHROMEDRIVER, f"--port={port}", "--allowed-ips=127.0.0.1"], stdout=log,
                                    stderr=log, env=environment, start_new_session=True)
    browser: WebDriver | None = None
    try:
        _wait_listening(port, driver_process)
        connection = ChromiumRemoteConnection(f"http://127.0.0.1:{port}", vendor_prefix="goog", browser_name="chrome",
                                              ignore_proxy=True)
        browser = webdriver.Remote(command_executor=connection, options=_options(root, trusted))
        yield browser
    finally:
        if browser is not None:
            with contextlib.suppress(Exception):  # chromedriver may be gone already; stopping it ends chromium too
                browser.quit()
        record.stop(driver_process)
        log.close()
        _wait_all_gone(root)


def _wait_all_gone(root: Path, timeout: float = 10) -> None:
    """chromium's processes end a moment after chromedriver (the kernel's signal, then their own exit)."""
    deadline = time.monotonic() + timeout
    while left := leftover_processes(root):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the browser left processes running: {left}")
        time.sleep(0.05)


def cdp(browser: WebDriver, command: str, **params: Any) -> dict[str, Any]:
    """A Chrome DevTools Protocol command (what WebDriver has no verb for: full-page shots, all cookies)."""
    result: dict[str, Any] = browser.execute("executeCdpCommand", {"cmd": command, "params": params})["value"]
    return result

