"""A few lines of SVG building: every text and attribute is escaped here, once."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape


def attrs(values: dict[str, Any]) -> str:
    out = []
    for key, value in values.items():
        if value is None or value is False:
            continue
        name = key.rstrip("_").replace("_", "-")
        if isinstance(value, float):
            value = f"{value:.2f}".rstrip("0").rstrip(".")
        out.append(f' {name}="{escape(str(value))}"')
    return "".join(out)


def el(tag: str, *children: Any, **values: Any) -> str:
    """``<tag attrs>children</tag>``; children that are not already markup are escaped."""
    inner = "".join(str(c) if isinstance(c, Markup) else str(escape(c)) for c in children if c is not None)
    if not inner:
        return Markup(f"<{tag}{attrs(values)}/>")
    return Markup(f"<{tag}{attrs(values)}>{inner}</{tag}>")


def document(width: float, height: float, body: list[str], *, label: str, class_: str = "") -> Markup:
    """A whole ``<svg>``: sized, labelled for screen readers, with the shared arrow and hatch."""
    defs = Markup(
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead"/></marker>'
        '<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="6" height="6" class="hatch-bg"/><line x1="0" y1="0" x2="0" y2="6" class="hatch-line"/>'
        '</pattern></defs>'
    )
    return Markup(el("svg", defs, Markup("".join(body)), xmlns="http://www.w3.org/2000/svg",
                     viewBox=f"0 0 {width:.0f} {height:.0f}", width=f"{width:.0f}", height=f"{height:.0f}",
                     role="img", aria_label=label, class_=class_ or None))
