"""Starting `pyagent a2a serve` in a subprocess on 127.0.0.1 (a free port) and stopping it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOWS = HERE / "servers" / "remote_flows.py"


@contextmanager
def a2a_server(target: str = str(FLOWS), *args: str, env: dict[str, str] | None = None,
               timeout: float = 60.0) -> Iterator[dict[str, str]]:
    """``pyagent a2a serve TARGET --port 0``; yields each served agent's URL by name."""
    proc = subprocess.Popen([sys.executable, "-m", "pyagent.cli", "a2a", "serve", target, "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    urls: dict[str, str] = {}
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            found = re.match(r"A2A agent '(.+)' at (\S+) ", line)
            if found:
                urls[found.group(1)] = found.group(2)
            if line.startswith("serving on "):
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ready.wait(timeout) or proc.poll() is not None:
            raise RuntimeError(f"pyagent a2a serve did not start: {proc.stderr.read() if proc.stderr else ''}")
        yield urls
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        reader.join(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
