"""Per-environment aliases (``champion``, ``challenger``) with an append-only audit log.

Every change is an entry ``seq = n + 1`` in the alias's history, created with
``If-None-Match: *``: of two writers that read the same state, exactly one creates the entry and
the other retries from the new state. The entry is the truth; the pointer object beside it is a
cache of the newest entry, moved forward only, with ``If-Match`` on its ETag. A writer that died
between the two writes leaves an entry ahead of the pointer; readers follow the log past the
pointer, and the next writer brings the pointer up to date before making its own change.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from approvals.registry.errors import ConcurrentUpdateError, NotFoundError, RollbackError
from approvals.registry.layout import Layout
from approvals.registry.names import check_alias, check_environment, check_version
from approvals.registry.records import LINEAGE_DEPTH, AliasState, VersionRecord, parse
from approvals.registry.store import ObjectStore
from approvals.registry.versions import Clock, VersionStore, utc_now

MAX_ATTEMPTS = 25

Change = Callable[[AliasState | None], AliasState | None]


class AliasBook:
    """Reads and changes the aliases of one registry."""

    def __init__(self, store: ObjectStore, versions: VersionStore, clock: Clock = utc_now) -> None:
        """Bind to the object store and the version store the aliases point into."""
        self.store, self.versions, self.clock = store, versions, clock
        self.layout: Layout = versions.layout

    def current(self, environment: str, alias: str) -> AliasState | None:
        """Where an alias points now, or None when it was never set."""
        check_environment(environment)
        check_alias(alias)
        state, _ = self._latest(environment, alias)
        return state

    def resolve(self, environment: str, alias: str) -> AliasState:
        """Where an alias points now.

        Raises:
            NotFoundError: When the alias was never set in that environment.
        """
        state = self.current(environment, alias)
        if state is None:
            raise NotFoundError(f"{alias} is not set in environment {environment!r}")
        return state

    def history(self, environment: str, alias: str) -> list[AliasState]:
        """Every change of an alias, oldest first."""
        check_environment(environment)
        check_alias(alias)
        prefix = self.layout.history(environment, alias)
        entries = [self._entry_at(key) for key in self.store.keys(prefix) if key.endswith(".json")]
        return [entry for entry in entries if entry is not None]

    def promote(
        self,
        environment: str,
        alias: str,
        version: str,
        *,
        actor: str | None = None,
        reason: str | None = None,
    ) -> AliasState:
        """Point an alias at a published version (no change when it already points there).

        Raises:
            NotFoundError: When the version is not published.
        """
        record = self.versions.show(check_version(version))

        def change(head: AliasState | None) -> AliasState | None:
            if head is not None and head.version == record.version:
                return None
            lineage = () if head is None else (head.version, *head.lineage)
            return self._state(environment, alias, head, record, "promote", lineage, actor, reason)

        return self._apply(environment, alias, change)

    def rollback(
        self,
        environment: str,
        alias: str,
        *,
        to: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> AliasState:
        """Point an alias back at the version it held before (or at ``to``).

        Repeated rollbacks walk further back through the lineage; so does ``to`` naming a
        version of the lineage (``rollback(to=plan_rollback().target.version)`` is the same
        change as ``rollback()``). A ``to`` outside the lineage is a jump, like a promotion.

        Raises:
            RollbackError: When the alias is unset or has no earlier version.
            NotFoundError: When the target version is not published (any more).
        """
        target = None if to is None else check_version(to)

        def change(head: AliasState | None) -> AliasState | None:
            current = _require(head, environment, alias)
            name, lineage = _walk_back(current, target)
            if name == current.version:
                return None
            record = self.versions.show(name)
            return self._state(environment, alias, head, record, "rollback", lineage, actor, reason)

        return self._apply(environment, alias, change)

    def plan_rollback(self, environment: str, alias: str, *, to: str | None = None) -> RollbackPlan:
        """Where :meth:`rollback` would point the alias now, writing nothing.

        Raises:
            RollbackError: When the alias is unset or has no earlier version.
            NotFoundError: When the target version is not published (any more).
        """
        target = None if to is None else check_version(to)
        current = _require(self.current(environment, alias), environment, alias)
        name, _ = _walk_back(current, target)
        return RollbackPlan(current=current, target=self.versions.show(name))

    def _state(
        self,
        environment: str,
        alias: str,
        head: AliasState | None,
        record: VersionRecord,
        action: str,
        lineage: tuple[str, ...],
        actor: str | None,
        reason: str | None,
    ) -> AliasState:
        return AliasState.model_validate(
            {
                "environment": environment,
                "alias": alias,
                "seq": 1 if head is None else head.seq + 1,
                "version": record.version,
                "content_hash": record.content_hash,
                "git_sha": record.git_sha,
                "image": record.image,
                "action": action,
                "previous_version": None if head is None else head.version,
                "lineage": lineage[:LINEAGE_DEPTH],
                "updated_at": self.clock().isoformat(),
                "actor": actor,
                "reason": reason,
                "txn": uuid.uuid4().hex,
            }
        )

    def _apply(self, environment: str, alias: str, change: Change) -> AliasState:
        check_environment(environment)
        check_alias(alias)
        for attempt in range(MAX_ATTEMPTS):
            head, behind = self._latest(environment, alias)
            if head is not None and behind:
                self._advance_pointer(head)
            proposal = change(head)
            if proposal is None:
                assert head is not None, "a no-op change needs a current state"
                return head
            if self._append(proposal):
                self._advance_pointer(proposal)
                return proposal
            time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
        raise ConcurrentUpdateError(
            f"{alias} in {environment!r} kept changing; gave up after {MAX_ATTEMPTS} attempts"
        )

    def _append(self, state: AliasState) -> bool:
        key = self.layout.entry(state.environment, state.alias, state.seq)
        if not self.store.put_new(key, state.to_bytes()):
            return False
        written = self._entry_at(key)
        return written is not None and written.txn == state.txn

    def _latest(self, environment: str, alias: str) -> tuple[AliasState | None, bool]:
        """The newest state (pointer, then any log entries past it) and whether it is ahead."""
        key = self.layout.pointer(environment, alias)
        stored = self.store.get(key)
        state = None if stored is None else parse(AliasState, stored.body, key)
        behind = False
        while (
            nxt := self._entry_at(self.layout.entry(environment, alias, _seq(state) + 1))
        ) is not None:
            state, behind = nxt, True
        return state, behind

    def _entry_at(self, key: str) -> AliasState | None:
        stored = self.store.get(key)
        return None if stored is None else parse(AliasState, stored.body, key)

    def _advance_pointer(self, state: AliasState) -> None:
        key = self.layout.pointer(state.environment, state.alias)
        for _ in range(MAX_ATTEMPTS):
            stored = self.store.get(key)
            if stored is not None and _seq(parse(AliasState, stored.body, key)) >= state.seq:
                return
            if self.store.replace(key, state.to_bytes(), None if stored is None else stored.etag):
                return
        raise ConcurrentUpdateError(f"pointer {key} kept changing; gave up")


def _seq(state: AliasState | None) -> int:
    return 0 if state is None else state.seq


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback would do: the alias's state now and the version it would point at."""

    current: AliasState
    target: VersionRecord

    @property
    def changes(self) -> bool:
        """False when the alias already points at the target (the rollback would be a no-op)."""
        return self.target.version != self.current.version


def _require(head: AliasState | None, environment: str, alias: str) -> AliasState:
    if head is None:
        raise RollbackError(f"{alias} is not set in {environment!r}: nothing to roll back")
    return head


def _walk_back(head: AliasState, to: str | None) -> tuple[str, tuple[str, ...]]:
    """The rollback target and the lineage it leaves: back along the lineage, or a jump."""
    if to is None:
        if not head.lineage:
            raise RollbackError(f"{head.alias} in {head.environment!r} has no earlier version")
        to = head.lineage[0]
    if to in head.lineage:
        return to, head.lineage[head.lineage.index(to) + 1 :]
    return to, (head.version, *head.lineage)
