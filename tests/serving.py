"""Real ``pyagent serve`` processes for the tests that start one: started, read, stopped.

Tests start them with the ``serve_process`` fixture (conftest.py), which stops whatever is left
running; ``wait_for`` polls for what the processes are expected to do.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

#: The line ``pyagent serve`` prints once its webhooks take requests.
LISTENING = re.compile(r"webhooks listening on (http://127\.0\.0\.1:\d+)")


class Served:
    """One ``pyagent serve <args>`` process, its output read as it comes.

    ``url`` is set once its webhooks listen; ``ready`` once a line matches ``ready_line``
    (by default that same line).
    """

    def __init__(
        self,
        *args: str,
        cwd: Path,
        env: Mapping[str, str],
        ready_line: re.Pattern[str] = LISTENING,
    ) -> None:
        self.lines: list[str] = []
        self.url = ""
        self.ready = threading.Event()
        self._ready_line = ready_line
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyagent.cli", "serve", *args],
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            found = LISTENING.search(line)
            if found:
                self.url = found.group(1)
            if self._ready_line.search(line):
                self.ready.set()

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait for the ready line; a process that does not print it in time is killed."""
        if not self.ready.wait(timeout):
            self.proc.kill()
            raise AssertionError("pyagent serve did not start:\n" + self.output)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and return the exit code."""
        self.proc.send_signal(sig)
        return self.proc.wait(60)

    @property
    def output(self) -> str:
        return "".join(self.lines)


def wait_for(
    check: Callable[[], Any], what: str, timeout: float = 30.0, every: float = 0.05
) -> Any:
    """Call ``check`` every ``every`` seconds until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")
