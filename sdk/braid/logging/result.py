"""An online result that also carries the request ids its rows were logged under."""

from __future__ import annotations

from braid.online.result import OnlineResult


class LoggedOnlineResult(OnlineResult):
    """:class:`OnlineResult` plus ``request_ids`` (one per entity row) and ``request_id``.

    Example:
        >>> r = store.get_online_features([{"user_id": 1}], service="fraud_v1", log=True)
        >>> r.request_id == r.request_ids[0]
        True
    """

    __slots__ = ("request_ids",)
    request_ids: list[str]

    @classmethod
    def wrap(cls, result: OnlineResult, request_ids: list[str]) -> LoggedOnlineResult:
        """The same columns (shared, not copied) with the request ids attached."""
        out = cls.__new__(cls)
        for slot in OnlineResult.__slots__:
            setattr(out, slot, getattr(result, slot))
        out.request_ids = request_ids
        return out

    @property
    def request_id(self) -> str | None:
        """The request id of the first row (all rows share it unless ids were passed per row)."""
        return self.request_ids[0] if self.request_ids else None
