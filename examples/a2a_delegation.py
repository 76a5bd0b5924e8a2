"""Two pyagent processes over A2A: one serves a workflow, this one delegates to it.

This process starts `pyagent a2a serve examples/servers/a2a_weather.py` (another process, on
127.0.0.1 and a free port), reads its Agent Card with remote_agent(url), and routes questions
with handoff.team: the router sees the remote agent's description from its card, so weather
questions go to the other process and the rest stay here. Every handoff to the remote agent is
audited with its URL.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from pyagent_a2a import remote_agent

from pyagent import agent, handoff

SERVED = Path(__file__).resolve().parent / "servers" / "a2a_weather.py"


def main() -> None:
    server = subprocess.Popen([sys.executable, "-m", "pyagent.cli", "a2a", "serve", str(SERVED), "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = ""
        for line in server.stdout:  # the server prints its agents' URLs once it listens
            found = re.match(r"A2A agent '.+' at (\S+) ", line)
            url = found.group(1) if found else url
            if line.startswith("serving on "):
                break
        weather = remote_agent(url)
        print(f"remote agent {weather.name!r} at {url}: {weather.description}")
        billing = agent(lambda q: "Your last invoice was paid on the 3rd.", name="billing",
                        description="Billing: invoices, payments and refunds")
        team = handoff.team([billing, weather])
        for question in ("Will there be rain and wind in Oslo?", "Was my last invoice paid?"):
            result = team.route(question)
            where = f"remote, {result.handoff.remote}" if result.handoff and result.handoff.remote else "local"
            print(f"{question} -> {result.agent} ({where}): {result.output}")
    finally:
        server.terminate()
        server.wait(timeout=15)
        if server.stdout is not None:
            server.stdout.close()


if __name__ == "__main__":
    main()
