"""Plain-text rendering of registry answers for the terminal."""

from __future__ import annotations

from typing import Any


def render_description(info: dict[str, Any], indent: int = 0) -> str:
    """A nested dict/list as an indented, readable listing."""
    lines: list[str] = []
    _walk(info, indent, lines)
    return "\n".join(lines)


def _walk(value: Any, indent: int, lines: list[str]) -> None:
    pad = "  " * indent
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                _walk(v, indent + 1, lines)
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                flat = all(not isinstance(v, (dict, list)) for v in item.values())
                if flat:
                    lines.append(pad + "- " + ", ".join(f"{k}={_scalar(v)}" for k, v in item.items()))
                else:
                    lines.append(f"{pad}-")
                    _walk(item, indent + 1, lines)
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(f"{pad}{_scalar(value)}")


def _scalar(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, (list, dict)) and not v:
        return "-"
    return str(v)
