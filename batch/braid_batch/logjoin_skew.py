"""Training/serving skew (DESIGN §8, §4.7, §4.8): logged values against point-in-time ones.

For every logged (request, entity row) the value served is compared with
``get_historical_features(..., as_of_known=True)`` for the same entity at ``served_at``, per
feature, with :func:`braid.equality.values_equal` (aggregations under their function's rule,
projections exactly). A healthy pipeline (backfill, materialize, serve) reports none.

Deviation: §4.8's float bounds need n and sum(|x|) of each window's inputs. The report does
not re-read the source per window; it passes n = 0, so float sums, means and variances are
compared within the relative term ``1e-9 * max(|a|, |b|)`` alone (stricter, never looser).

Example:
    >>> report = skew_report(repo, "fraud_v1")
    >>> print(report.render())
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from braid.duck import connect
from braid.equality import values_equal
from braid.logging.schema import LoggingError, LogSchema
from braid.logging.sink import logs_folder, parquet_glob
from braid.repo import Repo
from braid_batch import logjoin_sql as S
from braid_batch.logjoin import logged_relation

TOP = 5


@dataclass
class FeatureSkew:
    """Comparison of one feature over all logged rows."""

    feature: str
    function: str | None
    count: int = 0
    mismatches: int = 0
    largest: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mismatch_rate(self) -> float:
        return self.mismatches / self.count if self.count else 0.0


@dataclass
class SkewReport:
    """Per-feature skew of a service's logs."""

    service: str
    rows: int
    features: list[FeatureSkew]

    @property
    def mismatches(self) -> int:
        return sum(f.mismatches for f in self.features)

    def render(self) -> str:
        lines = [f"skew of service '{self.service}': {self.rows:,} logged rows, "
                 f"{self.mismatches:,} mismatching values (DESIGN 4.8)"]
        width = max((len(f.feature) for f in self.features), default=7)
        lines.append(f"  {'feature':<{width}}  {'count':>8}  {'mismatch':>8}  rate")
        for f in self.features:
            lines.append(f"  {f.feature:<{width}}  {f.count:>8,}  {f.mismatches:>8,}  "
                         f"{f.mismatch_rate:.4%}")
            for d in f.largest:
                lines.append(f"      request {d['request_id']} row {d['row']} "
                             f"{d['keys']}: served {d['served']!r}, offline {d['offline']!r}")
        return "\n".join(lines)


def _functions(repo: Repo, schema: LogSchema) -> list[str | None]:
    out: list[str | None] = []
    for ref in schema.refs:
        view, name = ref.split(":", 1)
        aggs = {a.name: a for a in repo.plan(view).aggregations}
        out.append(str(aggs[name].partial.spec.function) if name in aggs else None)
    return out


def _diff(a: Any, b: Any) -> float:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(float(a) - float(b))
    return float("inf")


def skew_report(repo: Repo, service: str, start: int | None = None, end: int | None = None,
                limit: int | None = None) -> SkewReport:
    """Compare logged values with point-in-time values known at serving time.

    Raises:
        LoggingError: the service has no compacted logs (``store.flush_logs``).
    """
    from braid_batch.pit import get_historical_features

    schema = LogSchema.for_service(repo, service)
    glob = parquet_glob(logs_folder(repo.config, service))
    if glob is None:
        raise LoggingError(f"service '{service}' has no logs under "
                           f"{logs_folder(repo.config, service)}; serve with log=True first")
    keys = [k for k, _ in schema.keys]
    con = connect()
    rel = S.requests_sql(logged_relation(schema, glob), keys, schema.columns, 0, 2**62, start, end,
                         "logged", dedupe=True)
    sql = f"SELECT * FROM ({rel}) ORDER BY served_at, request_id, \"row\""
    if limit:
        sql += f" LIMIT {int(limit)}"
    logged = con.sql(sql).to_arrow_table()
    ts = logged.column("served_at").cast(pa.timestamp("ms", tz="UTC"))
    entity_df = pa.table({**{k: logged.column(k) for k in keys}, "event_timestamp": ts})
    shorts = [r.split(":", 1)[1] for r in schema.refs]
    full = list(schema.columns) != shorts
    offline = get_historical_features(repo, entity_df, list(schema.refs), as_of_known=True,
                                      full_feature_names=full).to_arrow()
    report = SkewReport(service, logged.num_rows, [])
    ids, rows = logged.column("request_id").to_pylist(), logged.column("row").to_pylist()
    key_cols = [logged.column(k).to_pylist() for k in keys]
    for ref, col, short, fn in zip(schema.refs, schema.columns, shorts, _functions(repo, schema),
                                   strict=True):
        served = logged.column(col).to_pylist()
        known = offline.column(ref.replace(":", "__") if full else short).to_pylist()
        fs = FeatureSkew(ref, fn, count=len(served))
        bad = []
        for i, (a, b) in enumerate(zip(served, known, strict=True)):
            if not values_equal(fn, a, b):
                bad.append((_diff(a, b), i))
        fs.mismatches = len(bad)
        for _, i in sorted(bad, reverse=True)[:TOP]:
            fs.largest.append({"request_id": ids[i], "row": rows[i], "served": served[i],
                               "offline": known[i],
                               "keys": {k: c[i] for k, c in zip(keys, key_cols, strict=True)}})
        report.features.append(fs)
    return report
