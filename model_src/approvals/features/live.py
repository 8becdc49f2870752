"""The live version of the online store, and whether it holds the features a model needs.

A model's features are ready when the version readers are pointed at was built from this
code's feature definitions and key layout, and its state ends at or after the model's state
end (every request after the model's training window is then counted exactly). The preloader
writes nothing when they are ready already (:mod:`approvals.features.preload`); a service that
requires features is not ready without them
(:meth:`approvals.features.online.OnlineFeatureStore.afeatures_status`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from approvals.features.tiles import LAYOUT, definitions_hash

if TYPE_CHECKING:
    import redis

# KEYS[1] = pointer; ARGV[1] = prefix. The live version and its meta's defs, layout and end_us
# in one round trip, from one moment (a switch cannot fall between the two reads).
LIVE_SCRIPT = """
local version = redis.call('GET', KEYS[1])
if not version then return {false} end
local meta = ARGV[1] .. ':' .. version .. ':meta'
return {version, redis.call('HMGET', meta, 'defs', 'layout', 'end_us')}
"""


@dataclass(frozen=True)
class LiveVersion:
    """The version readers are pointed at, and what its meta says (None where absent).

    Attributes:
        version: the live version's name.
        defs: its feature definitions hash.
        layout: its key layout.
        end_us: its state end, epoch microseconds.
    """

    version: str
    defs: str | None
    layout: str | None
    end_us: int | None


class Readiness(enum.StrEnum):
    """Whether the live version holds a model's features, or why not."""

    READY = "ready"
    ABSENT = "absent"  # no live version, or its meta is gone
    LAYOUT = "layout"  # another key layout
    DEFINITIONS = "definitions"  # other feature definitions
    STALE = "stale"  # its state ends before the model's
    UNREACHABLE = "unreachable"  # Redis did not answer: nothing is known


@dataclass(frozen=True)
class FeaturesStatus:
    """What :func:`features_status` found.

    Attributes:
        readiness: the verdict.
        live: the live version read (None when absent or unreachable).
        model_end_us: the model's state end it was judged against (None: any).
    """

    readiness: Readiness
    live: LiveVersion | None = None
    model_end_us: int | None = None

    @property
    def ready(self) -> bool:
        """True when the live version holds the model's features."""
        return self.readiness is Readiness.READY

    def describe(self) -> str:
        """One line for a log or a person."""
        live, model_end = self.live, _iso(self.model_end_us)
        if live is None:
            unknown = self.readiness is Readiness.UNREACHABLE
            return "Redis did not answer" if unknown else "no live version"
        name, end = live.version, _iso(live.end_us)
        return {
            Readiness.READY: f"live version {name} ends {end}, not before the model's {model_end}",
            Readiness.ABSENT: f"live version {name} has no meta",
            Readiness.LAYOUT: f"live version {name} has key layout {live.layout}, not {LAYOUT}",
            Readiness.DEFINITIONS: (
                f"live version {name} has feature definitions {live.defs}, not {definitions_hash()}"
            ),
            Readiness.STALE: f"live version {name} ends {end}, before the model's {model_end}",
        }.get(self.readiness, self.readiness.value)


def features_status(live: LiveVersion | None, model_end_us: int | None) -> FeaturesStatus:
    """Whether ``live`` holds the features of a model whose state ends at ``model_end_us``
    (epoch microseconds; None: any version of these definitions does)."""
    if live is None or live.defs is None or live.end_us is None:
        readiness = Readiness.ABSENT
    elif live.layout != str(LAYOUT):
        readiness = Readiness.LAYOUT
    elif live.defs != definitions_hash():
        readiness = Readiness.DEFINITIONS
    elif model_end_us is not None and live.end_us < model_end_us:
        readiness = Readiness.STALE
    else:
        readiness = Readiness.READY
    return FeaturesStatus(readiness, live, model_end_us)


def parse_live(reply: Any) -> LiveVersion | None:
    """:class:`LiveVersion` of a :data:`LIVE_SCRIPT` reply (None when no pointer is set).

    Raises:
        ValueError: the reply is not what the script returns.
    """
    if not reply or reply[0] is None:
        return None
    version, (defs, layout, end_us) = reply
    text = [v.decode() if isinstance(v, bytes) else None for v in (defs, layout, end_us)]
    end = int(text[2]) if text[2] is not None and text[2].lstrip("-").isdigit() else None
    return LiveVersion(version.decode(), text[0], text[1], end)


def read_live(conn: redis.Redis, prefix: str) -> LiveVersion | None:
    """The live version of ``prefix`` and its meta, read in one round trip.

    Raises:
        redis.RedisError: Redis failed.
    """
    return parse_live(conn.register_script(LIVE_SCRIPT)(keys=[f"{prefix}:current"], args=[prefix]))


_EPOCH = datetime(1970, 1, 1)


def _iso(us: int | None) -> str:
    return "(none)" if us is None else (_EPOCH + timedelta(microseconds=us)).isoformat()
