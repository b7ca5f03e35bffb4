"""Loader of the golden time vectors in ``time_cases.json`` (DESIGN §4.2).

Each case is a JSON object:

* ``name``, ``description``: what the case pins, and why each expected value is what it is.
* ``view``: ``entities`` (``[{"name", "join_keys"}]``), ``source`` (``timestamp_field``,
  ``created_timestamp_field``, ``schema``), ``filter``, ``features`` and ``aggregations`` as
  keyword arguments of :class:`braid.Feature` / :class:`braid.Aggregation`, ``ttl``.
* ``events``: source rows; time columns are int epoch milliseconds (or null). In float columns
  the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` stand for those values (JSON has
  none).
* ``queries``: ``[{"keys": [...], "t": ms}]``, ``as_of_known`` (default false).
* ``expected``: one ``{feature: value}`` per query; every feature of the view is listed.

Example:
    >>> case = load_cases()[0]
    >>> plan = case.plan()
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from braid.definitions import BatchSource, Entity, FeatureView
from braid.definitions.view import Aggregation, Feature
from braid.dtypes import DType
from braid.plan import ViewPlan, lower

CASES_PATH = Path(__file__).with_name("time_cases.json")
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


@dataclass(frozen=True)
class TimeCase:
    """One golden case, decoded."""

    name: str
    description: str
    view: dict[str, Any]
    events: list[dict[str, Any]]
    queries: list[tuple[tuple[Any, ...], int]]
    expected: list[dict[str, Any]]
    as_of_known: bool = False

    @property
    def schema(self) -> dict[str, DType]:
        return {k: DType.parse(v) for k, v in self.view["source"]["schema"].items()}

    def feature_view(self, path: str = "events.parquet") -> FeatureView:
        """The case's view over a BatchSource at ``path``."""
        v = self.view
        src = v["source"]
        source = BatchSource(
            name=f"{self.name}_source", path=path, timestamp_field=src["timestamp_field"],
            created_timestamp_field=src.get("created_timestamp_field"), schema=src["schema"],
        )
        return FeatureView(
            name=self.name,
            entities=[Entity(name=e["name"], join_keys=e["join_keys"]) for e in v["entities"]],
            source=source,
            filter=v.get("filter"),
            features=[Feature(**f) for f in v.get("features", [])],
            aggregations=[Aggregation(**a) for a in v.get("aggregations", [])],
            ttl=v.get("ttl"),
        )

    def plan(self, path: str = "events.parquet") -> ViewPlan:
        """``braid.plan.lower`` of :meth:`feature_view`."""
        return lower(self.feature_view(path), project="golden")


def _decode_event(row: dict[str, Any], schema: dict[str, DType]) -> dict[str, Any]:
    out = dict(row)
    for col, value in row.items():
        if schema.get(col) == DType.FLOAT64 and isinstance(value, str):
            out[col] = _NON_FINITE[value]
        elif schema.get(col) == DType.FLOAT64 and isinstance(value, int):
            out[col] = float(value)
    return out


def decode_case(raw: dict[str, Any]) -> TimeCase:
    """A :class:`TimeCase` from its JSON object."""
    schema = {k: DType.parse(v) for k, v in raw["view"]["source"]["schema"].items()}
    return TimeCase(
        name=raw["name"],
        description=raw["description"],
        view=raw["view"],
        events=[_decode_event(e, schema) for e in raw["events"]],
        queries=[(tuple(q["keys"]), int(q["t"])) for q in raw["queries"]],
        expected=raw["expected"],
        as_of_known=bool(raw.get("as_of_known", False)),
    )


def load_cases(path: Path = CASES_PATH) -> list[TimeCase]:
    """Every case of the golden file, in file order."""
    return [decode_case(c) for c in json.loads(path.read_text())]
