"""``ConsoleMonitor``: a live view on a terminal, one plain line per event elsewhere."""

from __future__ import annotations

from typing import Any, TextIO


class ConsoleMonitor:
    """Shows runs as they happen.

    On a terminal: a live view of every run in progress (tasks with status, duration,
    attempts, fallbacks and handoffs; nested workflows and team rounds indented under the
    task that runs them), redrawn at most ``refresh_per_second`` times, and a summary table
    when a run ends. Elsewhere (CI logs, files): one plain line per event, no control codes.

    ``console`` is a ``rich.console.Console`` (default: one on standard output); ``file``
    writes to a file instead; ``live`` forces the choice that is otherwise the console's
    ``is_terminal``.
    """

    def __init__(self, console: Any = None, *, file: TextIO | None = None, live: bool | None = None,
                 refresh_per_second: float = 4.0, max_rows: int = 20, summary: bool = True) -> None:
        from pyagent.plugin import ConfigurationError

        if not refresh_per_second > 0:
            raise ConfigurationError(f"ConsoleMonitor refresh_per_second must be > 0, got {refresh_per_second!r}")
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise ConfigurationError(f"ConsoleMonitor max_rows must be a whole number >= 1, got {max_rows!r}")
        if console is None:
            from rich.console import Console

            console = Console(file=file)
        self.console = console
        self.live = (console.is_terminal and not console.is_dumb_terminal) if live is None else bool(live)
        if self.live:
            from pyagent_console.live import LiveView

            self.view: Any = LiveView(console, refresh_per_second=refresh_per_second,
                                      max_rows=max_rows, summary=summary)
        else:
            from pyagent_console.lines import PlainLines

            self.view = PlainLines(console.file)
        # The view's own method: a run calls it directly, and reads the kinds it wants from it.
        self.on_event = self.view.on_event
        self.event_kinds = self.view.event_kinds

    def render(self) -> Any:
        """The live view as it is now (rich renderables); plain mode has none."""
        return self.view.render() if self.live else None

    def close(self) -> None:
        """Stop the live display (or flush the plain lines)."""
        self.view.close()

    def __repr__(self) -> str:
        return f"ConsoleMonitor({'live' if self.live else 'plain lines'})"
