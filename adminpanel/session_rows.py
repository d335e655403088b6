"""Loads session rows as the row template reads them: for the pages, the API and the live push.

Every row carries its gateway and ``active_flags`` (uncleared flags by
severity and code). Lists page by *keyset* (seek) pagination: each sort is a
few segments, each an indexed order over non-null columns ending in the
primary key, and the next page starts after the last row's values. No
OFFSET, and no COUNT(*) over the whole table.

The live push loads the rows it was told changed (``rows_for_keys``) in
plain SQL over the models' own tables and columns: on the thread every push
waits for, the ORM's query compiler cost more than the queries themselves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import (
    Model,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce

from adminpanel.forms import encode_cursor
from adminpanel.models import Flag, Gateway, Session

PAGE_SIZE = 50
# Rows per query of ``rows_for_keys``: a push renders at most 500 rows, one query.
KEYS_CHUNK = 500

# (gateway name, session key): how ingest and the live push name a session.
SessionKey = tuple[str, str]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
_DATETIME_KEYS = frozenset({"lock_acquired_at", "last_progress_at", "oldest_flag"})


def active_flags() -> Prefetch[Any]:
    """Prefetch ``s.active_flags``: the uncleared flags by severity and code."""
    return Prefetch(
        "flags",
        queryset=Flag.objects.filter(cleared_at__isnull=True).order_by("severity", "code"),
        to_attr="active_flags",
    )


def filtered_sessions(filters: dict[str, Any]) -> QuerySet[Session]:
    """Sessions matching a list's filters (``SessionFilterForm``'s cleaned data)."""
    sessions = Session.objects.select_related("gateway")
    if filters.get("gateway"):
        sessions = sessions.filter(gateway__name=filters["gateway"])
    if filters.get("agent"):
        sessions = sessions.filter(agent=filters["agent"])
    if filters.get("channel"):
        sessions = sessions.filter(channel=filters["channel"])
    if filters.get("phase"):
        sessions = sessions.filter(locked=True, phase=filters["phase"])
    if filters.get("q"):
        sessions = sessions.filter(session_key__contains=filters["q"])
    if filters.get("flagged"):
        sessions = sessions.filter(flag_count__gt=0)
    return sessions


def with_oldest_flag(sessions: QuerySet[Session]) -> QuerySet[Session]:
    """Annotate ``oldest_flag`` (when the oldest active flag was raised), for the worst sort."""
    oldest = Flag.objects.filter(session=OuterRef("pk"), cleared_at__isnull=True).order_by("since")
    return sessions.annotate(
        oldest_flag=Coalesce(Subquery(oldest.values("since")[:1]), Value(_FAR_FUTURE))
    )


# Keyset pagination ---------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """Rows matching ``where``, in ``order``: (column, descending) pairs, non-null, pk last."""

    where: Q
    order: tuple[tuple[str, bool], ...]

    def order_by(self) -> list[str]:
        return [("-" if desc else "") + name for name, desc in self.order]


_LOCKED_AT = Q(locked=True, lock_acquired_at__isnull=False)
_LOCKED_NO_AT = Q(locked=True, lock_acquired_at__isnull=True)
_IDLE_NEWEST = Segment(Q(locked=False), (("pk", True),))

SORT_SEGMENTS: dict[str, tuple[Segment, ...]] = {
    # Oldest lock first: the sessions most likely stuck are on top; then idle, newest first.
    "age": (
        Segment(_LOCKED_AT, (("lock_acquired_at", False), ("pk", False))),
        Segment(_LOCKED_NO_AT, (("pk", False),)),
        _IDLE_NEWEST,
    ),
    "-age": (
        Segment(_LOCKED_AT, (("lock_acquired_at", True), ("pk", True))),
        Segment(_LOCKED_NO_AT, (("pk", False),)),
        _IDLE_NEWEST,
    ),
    "progress": (
        Segment(
            Q(locked=True, last_progress_at__isnull=False),
            (("last_progress_at", False), ("pk", False)),
        ),
        Segment(~Q(locked=True, last_progress_at__isnull=False), (("pk", True),)),
    ),
    "waiters": (Segment(Q(), (("waiter_count", True), ("pk", False))),),
    "key": (Segment(Q(), (("session_key", False), ("pk", False))),),
    # The stuck tab: critical before warning, then the oldest active flag.
    "worst": (Segment(Q(), (("worst_severity", False), ("oldest_flag", False), ("pk", False))),),
}


def _cursor_value(value: Any) -> int | str:
    if isinstance(value, datetime):
        return (value - EPOCH) // timedelta(microseconds=1)
    return value  # type: ignore[no-any-return]


def _column_value(name: str, value: int | str) -> Any:
    if name in _DATETIME_KEYS:
        if not isinstance(value, int):
            raise ValueError(name)
        return EPOCH + timedelta(microseconds=value)
    if name == "session_key" or name == "worst_severity":
        if not isinstance(value, str):
            raise ValueError(name)
        return value
    if not isinstance(value, int):
        raise ValueError(name)
    return value


def _after(segment: Segment, values: list[Any]) -> Q:
    """Rows strictly after ``values`` in the segment's order (a lexicographic seek)."""
    condition = Q(pk__in=[])
    equal = Q()
    for (name, desc), value in zip(segment.order, values, strict=True):
        condition |= equal & Q(**{f"{name}__{'lt' if desc else 'gt'}": value})
        equal &= Q(**{name: value})
    return condition


@dataclass
class KeysetPage:
    rows: list[Session]
    next_cursor: str | None
    is_first: bool


def keyset_page(
    sessions: QuerySet[Session],
    segments: tuple[Segment, ...],
    cursor: list[int | str] | None,
    size: int = PAGE_SIZE,
) -> KeysetPage:
    """One page of ``sessions`` in the segments' order; ``ValueError`` for a foreign cursor.

    At most one query per segment plus one for the flags, however many rows.
    """
    start, after = 0, None
    if cursor:
        start = int(cursor[0])
        if not 0 <= start < len(segments) or len(cursor) - 1 != len(segments[start].order):
            raise ValueError("the cursor belongs to another sort")
        after = [
            _column_value(name, v)
            for (name, _), v in zip(segments[start].order, cursor[1:], strict=True)
        ]
    tagged: list[tuple[int, Session]] = []
    for index in range(start, len(segments)):
        segment = segments[index]
        part = sessions.filter(segment.where)
        if index == start and after is not None:
            part = part.filter(_after(segment, after))
        wanted = size + 1 - len(tagged)
        tagged.extend((index, row) for row in part.order_by(*segment.order_by())[:wanted])
        if len(tagged) > size:
            break
    page = [row for _, row in tagged[:size]]
    next_cursor = None
    if len(tagged) > size:
        index, last = tagged[size - 1]
        values = [_cursor_value(getattr(last, name)) for name, _ in segments[index].order]
        next_cursor = encode_cursor([index, *values])
    prefetch_related_objects(page, active_flags())
    return KeysetPage(rows=page, next_cursor=next_cursor, is_first=cursor is None)


# Plain SQL: the live push's path, and the header's count ------------------------------


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _column(model: type[Model], field: str) -> str:
    column = model._meta.get_field(field).column  # type: ignore[union-attr]
    assert isinstance(column, str)
    return connection.ops.quote_name(column)


def _placeholders(count: int) -> str:
    return ", ".join(["%s"] * count)


def stuck_count() -> int:
    """The header's count: sessions with at least one active flag (an indexed range)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM {_table(Session)} WHERE {_column(Session, 'flag_count')} > 0"
        )
        (count,) = cursor.fetchone()
    return int(count)


def rows_for_keys(keys: Iterable[SessionKey]) -> list[Session]:
    """The sessions for ``(gateway, session_key)`` pairs, by id, as the row template reads them.

    Two queries, whatever the number of rows: the sessions with their
    gateway's name, then their active flags (as ``active_flags()`` prefetches).
    """
    wanted = set(keys)
    if not wanted:
        return []
    sessions, gateways = _table(Session), _table(Gateway)
    key, name, gateway_id = (
        _column(Session, "session_key"),
        _column(Gateway, "name"),
        _column(Session, "gateway"),
    )
    found: list[Session] = []
    ordered = sorted(wanted)
    for start in range(0, len(ordered), KEYS_CHUNK):
        by_gateway: dict[str, list[str]] = defaultdict(list)
        for gateway, session_key in ordered[start : start + KEYS_CHUNK]:
            by_gateway[gateway].append(session_key)
        match: list[str] = []
        params: list[str] = []
        for gateway, session_keys in sorted(by_gateway.items()):
            match.append(f"(g.{name} = %s AND s.{key} IN ({_placeholders(len(session_keys))}))")
            params += [gateway, *session_keys]
        sql = (
            f"SELECT s.*, g.{name} AS runboard_gateway_name FROM {sessions} s "
            f"JOIN {gateways} g ON g.id = s.{gateway_id} WHERE {' OR '.join(match)} ORDER BY s.id"
        )
        found.extend(Session.objects.raw(sql, params))
    # The row shows its gateway's name; other gateway fields load on first use.
    by_id: dict[int, Gateway] = {}
    for session in found:
        row = by_id.get(session.gateway_id)
        if row is None:
            named = [session.gateway_id, session.runboard_gateway_name]  # type: ignore[attr-defined]
            row = by_id[session.gateway_id] = Gateway.from_db(
                session._state.db, ["id", "name"], named
            )
        session.gateway = row
    _attach_active_flags(found)
    return found


def _attach_active_flags(sessions: list[Session]) -> None:
    """``s.active_flags``: the session's uncleared flags by severity and code, one query."""
    by_pk = {s.pk: s for s in sessions}
    for session in sessions:
        session.active_flags = []  # type: ignore[attr-defined]
    pks = sorted(by_pk)
    flags, session_id = _table(Flag), _column(Flag, "session")
    cleared, severity, code = (_column(Flag, f) for f in ("cleared_at", "severity", "code"))
    for start in range(0, len(pks), KEYS_CHUNK):
        chunk = pks[start : start + KEYS_CHUNK]
        sql = (
            f"SELECT * FROM {flags} WHERE {cleared} IS NULL AND {session_id} IN "
            f"({_placeholders(len(chunk))}) ORDER BY {session_id}, {severity}, {code}"
        )
        for flag in Flag.objects.raw(sql, chunk):
            session = by_pk[flag.session_id]
            flag.session = session
            session.active_flags.append(flag)  # type: ignore[attr-defined]
