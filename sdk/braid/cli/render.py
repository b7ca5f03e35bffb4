"""Plain-text rendering of registry answers for the terminal."""

from __future__ import annotations

from typing import Any

from braid.timeutil import format_duration, from_epoch_ms


def render_description(info: dict[str, Any]) -> str:
    """A view (or other object) described for people; ``--json`` gives the raw dict."""
    if info.get("kind") != "view":
        return render_tree(info)
    lines = [
        f"view {info['name']}  (project {info['project']}, version {info['version']})",
        f"  {info.get('description') or '(no description)'}",
        f"  owner: {info.get('owner') or '-'}   tags: {_tags(info.get('tags'))}",
        f"  entities: {', '.join(_entity(e) for e in info.get('entities', []))}",
        f"  source: {_source(info.get('source') or {})}",
        f"  filter: {info.get('filter') or '-'}   ttl: {_ms(info.get('ttl_ms'))}",
    ]
    features = info.get("features") or []
    if features:
        lines.append("  projections:")
        for f in features:
            expr = f" = {f['expr']}" if f.get("expr") else ""
            lines.append(f"    {f['name']:28} {f.get('dtype', ''):8}{expr}")
    aggs = info.get("aggregations") or []
    if aggs:
        lines.append("  aggregations:                   function  input          window  hop")
        for a in aggs:
            lines.append(f"    {a['name']:28} {a['function']:9} {str(a.get('input') or '*'):14} "
                         f"{_ms(a.get('window_ms')):7} {_ms(a.get('hop_ms'))}")
    lines.append(f"  namespace: {info.get('namespace')} (serving: {info.get('serving_namespace')})")
    for ns, ranges in (info.get("backfilled") or {}).items():
        cover = ", ".join(f"{_time(a)} .. {_time(b)}" for a, b in ranges) if ranges else "none"
        lines.append(f"  backfilled {ns}: {cover}")
    lineage = info.get("lineage") or {}
    lines.append(f"  upstream: {', '.join(lineage.get('upstream', [])) or '-'}")
    lines.append(f"  downstream: {', '.join(lineage.get('downstream', [])) or '-'}")
    return "\n".join(lines)


def _entity(e: dict[str, Any]) -> str:
    keys = ", ".join(f"{k}: {t}" for k, t in (e.get("join_keys") or {}).items())
    return f"{e.get('name')} ({keys})"


def _source(s: dict[str, Any]) -> str:
    where = s.get("topic") and f"topic {s['topic']}" or s.get("path") or s.get("query") or "?"
    return f"{s.get('name')} ({where}; time: {s.get('timestamp_field')})"


def _tags(tags: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in (tags or {}).items()) or "-"


def _ms(value: Any) -> str:
    return format_duration(int(value)) if value else "-"


def _time(ms: int) -> str:
    return from_epoch_ms(int(ms)).strftime("%Y-%m-%d %H:%M")


def render_tree(info: dict[str, Any], indent: int = 0) -> str:
    """A nested dict/list as an indented listing."""
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
                lines.append(pad + "- " + ", ".join(f"{k}={_scalar(v)}" for k, v in item.items()))
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(f"{pad}{_scalar(value)}")


def _scalar(v: Any) -> str:
    if v is None or (isinstance(v, (list, dict)) and not v):
        return "-"
    return str(v)
