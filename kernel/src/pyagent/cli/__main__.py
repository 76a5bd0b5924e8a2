"""``python -m pyagent.cli``: the same as the ``pyagent`` command."""

from pyagent.cli import main

main()
