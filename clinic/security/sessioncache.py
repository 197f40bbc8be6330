"""A brief, per-process memory of resolved sign-in sessions.

Resolving a session cookie (session row, user, roles, linked patients) is work every request repeats, and it
was the largest share of a cheap request's cost. A snapshot is kept for ``ttl`` seconds at most.

Staleness is bounded two ways:

* every commit made through a watched session factory that touches what a snapshot is built from (sessions,
  users, memberships, organizations, patients, guardians) evicts the affected users' snapshots at once, so in a
  single-process install a sign-out, a revoked role or a deactivated account takes effect on the next request;
* another process's changes are seen within ``ttl`` seconds, and at once where its evictions are passed on
  (the workers of one server do so through Redis, see clinic.web.live).
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from sqlalchemy import event, inspect
from sqlalchemy.orm import InstanceState, ORMExecuteState, Session, UOWTransaction

from clinic.db.clinical import Guardian, Patient
from clinic.db.models import Membership, Organization, User, WebSession

V = TypeVar("V")

#: ``Session.info`` key under which a factory's sessions carry the cache they keep fresh.
INFO_KEY = "telemed.session_cache"
_PENDING = "telemed.session_cache.pending"
_ALL = "*"

#: Columns whose change alone leaves every snapshot valid (bookkeeping written on each refresh).
_IGNORED = {WebSession: frozenset({"last_seen_at"}), User: frozenset({"last_login_at"})}
_WATCHED = (WebSession, User, Membership, Organization, Patient, Guardian)
_WATCHED_TABLES = frozenset(m.__tablename__ for m in _WATCHED)


class SessionCache(Generic[V]):
    def __init__(self, ttl: float, maxsize: int = 20_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.maxsize = maxsize
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, uuid.UUID, V]] = OrderedDict()
        #: Told of every eviction made here (users, or None for all), to pass on to other server processes.
        self.announce: Callable[[frozenset[uuid.UUID] | None], None] | None = None

    def get(self, key: str) -> V | None:
        hit = self._items.get(key)
        if hit is None:
            return None
        stored, _, value = hit
        if self._clock() - stored >= self.ttl:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: str, user_id: uuid.UUID, value: V) -> None:
        if self.ttl <= 0:
            return
        self._items[key] = (self._clock(), user_id, value)
        self._items.move_to_end(key)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)

    def evict_users(self, user_ids: Iterable[uuid.UUID], *, announce: bool = True) -> None:
        gone = frozenset(user_ids)
        if gone:
            for key in [k for k, (_, uid, _) in self._items.items() if uid in gone]:
                del self._items[key]
            if announce and self.announce is not None:
                self.announce(gone)

    def clear(self, *, announce: bool = True) -> None:
        self._items.clear()
        if announce and self.announce is not None:
            self.announce(None)

    def __len__(self) -> int:
        return len(self._items)


def _affected_users(obj: Any) -> set[uuid.UUID] | str | None:
    """The users whose snapshots ``obj`` (new, changed or deleted) invalidates; ``_ALL`` if unknown."""
    if isinstance(obj, Organization):
        return _ALL  # require_2fa and names reach many members' snapshots
    if isinstance(obj, User):
        return {obj.id}
    if isinstance(obj, WebSession | Membership | Guardian | Patient):
        users: set[uuid.UUID] = set()
        state: InstanceState[Any] = inspect(obj)
        history = state.attrs.user_id.history
        for uid in (*history.added, *history.unchanged, *history.deleted):
            if uid is not None:
                users.add(uid)
        return users
    return None


def _changed_only_ignored(obj: Any) -> bool:
    ignored = _IGNORED.get(type(obj))
    if not ignored:
        return False
    state: InstanceState[Any] = inspect(obj)
    changed = {a.key for a in state.attrs if a.history.has_changes()}
    return bool(changed) and changed <= ignored


def _mark(session: Session, users: set[uuid.UUID] | str) -> None:
    pending: set[uuid.UUID] | str = session.info.get(_PENDING, set())
    if pending == _ALL or users == _ALL:
        session.info[_PENDING] = _ALL
    else:
        assert isinstance(pending, set) and isinstance(users, set)
        session.info[_PENDING] = pending | users


@event.listens_for(Session, "before_flush")
def _collect(session: Session, flush_context: UOWTransaction, instances: object) -> None:
    if INFO_KEY not in session.info:
        return
    for obj in (*session.new, *session.deleted):
        users = _affected_users(obj)
        if users is not None:
            _mark(session, users)
    for obj in session.dirty:
        if not session.is_modified(obj) or _changed_only_ignored(obj):
            continue
        users = _affected_users(obj)
        if users is not None:
            _mark(session, users)


@event.listens_for(Session, "do_orm_execute")
def _bulk(state: ORMExecuteState) -> None:
    # Bulk UPDATE/DELETE statements never pass through the flush; evict everything if one hits a watched table.
    if INFO_KEY not in state.session.info or not (state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    if getattr(table, "name", None) in _WATCHED_TABLES:
        _mark(state.session, _ALL)


@event.listens_for(Session, "after_commit")
def _evict(session: Session) -> None:
    cache: SessionCache[Any] | None = session.info.get(INFO_KEY)
    pending = session.info.pop(_PENDING, None)
    if cache is None or not pending:
        return
    if pending == _ALL:
        cache.clear()
    else:
        cache.evict_users(pending)
