"""``pyagent plugins``: what is installed, what each plugin provides, what failed to load."""

from __future__ import annotations

import json

import click

from pyagent.plugins import get_runtime


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def plugins(as_json: bool) -> None:
    """List installed plugins, what each provides, and plugins that failed to load."""
    rt = get_runtime()
    infos = list(rt.iter_plugins())
    drivers = {kind: rt.driver_names(kind) for kind in ("stores", "executors")}
    if as_json:
        click.echo(json.dumps({
            "plugins": [
                {"name": p.name, "distribution": p.distribution, "version": p.version, "provides": p.provides}
                for p in infos
            ],
            "drivers": drivers,
            "failures": [{"name": f.name, "distribution": f.distribution, "error": f.error} for f in rt.failures],
        }, indent=2))
        return
    if not infos:
        click.echo("No plugins installed. Install patterns with e.g.: pip install pyagent-sequential "
                   "(from a clone of pyagent: pip install ./plugins/sequential)")
    for p in infos:
        dist = f"{p.distribution} {p.version}" if p.distribution else "registered in-process"
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in sorted(p.provides.items()))
        click.echo(f"{p.name:<16} {dist:<32} {provides or '(observes events)'}")
    for kind, names in drivers.items():
        click.echo(f"{kind + ' (drivers)':<16} {', '.join(names) or 'none'}")
    if rt.failures:
        click.echo("\nFailed to load:")
        for f in rt.failures:
            click.echo(f"  {f.name} ({f.distribution or 'unknown distribution'}): {f.error}", err=False)


COMMANDS = [plugins]
