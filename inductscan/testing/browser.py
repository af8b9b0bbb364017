"""Headless Chromium from the command line, to test the HTML report in a real browser.

Debian's ``chromium`` package (``apt-get install chromium``); nothing is downloaded. Every run
blocks the network (``--host-resolver-rules``), so a page that needed a fetch would show it.
``selftest`` opens a report with ``#selftest``: the page moves its own slider, clicks a head and
sorts a table, then writes what it saw (and any script error) into ``<pre id="selftest">``, which
``--dump-dom`` prints; Chromium's console log (stderr) is read for uncaught errors too.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

NAMES = ("chromium", "chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: the page must hold everything
    "--enable-logging=stderr",
    "--v=0",
]
CONSOLE = re.compile(r":CONSOLE[^\]]*\] (.*)")
TIMEOUT = 120


def find_chromium() -> str | None:
    """The Chromium executable on PATH, or None."""
    return next((found for name in NAMES if (found := shutil.which(name))), None)


def _run(page: Path, *arguments: str, fragment: str = "", budget_ms: int = 20_000) -> subprocess.CompletedProcess:
    executable = find_chromium()
    if executable is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [executable, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *arguments]
        url = Path(page).resolve().as_uri() + fragment
        return subprocess.run([*command, url], capture_output=True, text=True, timeout=TIMEOUT, check=False)


def console_messages(stderr: str) -> list[str]:
    """The page's console messages in Chromium's log (uncaught errors start with 'Uncaught')."""
    return [match.group(1) for match in CONSOLE.finditer(stderr)]


def selftest(page: Path) -> dict:
    """Open ``page`` with #selftest; the page's own report (see ``report_page.js``) plus
    ``console``, the console's messages, and ``dom``, the page as Chromium left it."""
    done = _run(page, "--dump-dom", fragment="#selftest")
    found = re.findall(r'<pre id="selftest">(.*?)</pre>', done.stdout, re.S)
    if not found:
        raise RuntimeError(f"the page wrote no self-test report; chromium said: {done.stderr[-2000:]}")
    report = json.loads(html.unescape(found[-1]))
    return report | {"console": console_messages(done.stderr), "dom": done.stdout}


def screenshot(page: Path, png: Path, *, width: int = 1280, height: int = 2400) -> list[str]:
    """A PNG of the page's first ``width`` x ``height`` pixels; returns the console's messages."""
    done = _run(page, f"--screenshot={Path(png).resolve()}", f"--window-size={width},{height}")
    if not Path(png).is_file():
        raise RuntimeError(f"chromium wrote no screenshot; it said: {done.stderr[-2000:]}")
    return console_messages(done.stderr)
