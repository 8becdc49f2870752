"""Key layout and tile arithmetic shared by the materializer and the online reader.

Per family key, one Redis hash ``{prefix}:{version}:{family}:{key values joined by \\x1f}``
holds the key's lifetime counters (``n``, ``a``, ...), one field ``{tile}:{tile_start}`` per
recent tile with the family's counters comma-joined (tile start in epoch seconds), and for
cards ``last_us``/``last_code``. For a request at t after the state's end, a window W with
tile s is the sum of the tiles starting at or after ``floor(t/s)*s - W``: exactly what
:func:`approvals.features.offline.query_counts` computes from the same state.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np

from approvals.features.definitions import COUNTERS, FAMILIES, Family

LAYOUT = 1
SEP = "\x1f"  # between the values of a composite key
FIELD_SEP = b"\x1e"  # between the fields of a hash flattened by the read script
KEY_SEP = b"\x1d"  # between the hashes of a request in the read script's reply
US = 1_000_000
WIDTH = len(COUNTERS)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_TILES = sorted({w.tile for f in FAMILIES for w in f.windows if not w.lifetime})
_TILE_SIZES = np.array(_TILES, dtype=np.int64)
_FIELDS = [{c.encode(): j for j, c in enumerate(f.counters)} for f in FAMILIES]
_PAD = [b",0" * (WIDTH - len(f.counters)) for f in FAMILIES]
_KEY_FIELDS = tuple(sorted({k for f in FAMILIES for k in f.keys}))
_FAMILY_PARTS = [(f"{f.name}:", [_KEY_FIELDS.index(k) for k in f.keys]) for f in FAMILIES]


def definitions_hash() -> str:
    """Fingerprint of the feature definitions and key layout (a reader refuses a mismatch)."""
    spec = {
        "layout": LAYOUT,
        "counters": COUNTERS,
        "families": [
            [f.name, f.keys, f.counters, [[w.name, w.seconds, w.tile] for w in f.windows]]
            for f in FAMILIES
        ],
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def key_text(value: Any) -> str:
    """One key value as text: booleans as 0/1, the separator escaped so keys cannot collide."""
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    text = str(value)
    if "\\" in text or SEP in text:
        return text.replace("\\", "\\\\").replace(SEP, "\\x1f")
    return text


def family_key(family: Family, values: Sequence[Any]) -> str:
    """The version-relative Redis key of one family key: ``<family>:<v1>\\x1f<v2>...``."""
    return f"{family.name}:{SEP.join(key_text(v) for v in values)}"


def tile_spans(family: Family) -> dict[int, int]:
    """Tile size -> longest window (seconds) using it, for the family's finite windows."""
    spans: dict[int, int] = {}
    for window in family.windows:
        if not window.lifetime:
            spans[window.tile] = max(spans.get(window.tile, 0), window.seconds)
    return spans


def epoch_us(value: Any) -> int:
    """Microseconds since the epoch of a datetime (naive = UTC) or numpy datetime64."""
    if isinstance(value, np.datetime64):
        return int(value.astype("datetime64[us]").astype(np.int64))
    if not isinstance(value, datetime):
        raise ValueError(f"event_time must be a datetime, got {type(value).__name__}")
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return int((aware - _EPOCH) // _ONE_US)


@dataclass(frozen=True)
class Plan:
    """What one request reads: distinct keys, each attempt's key per family, request times.

    Attributes:
        t_us: request time of each attempt (epoch microseconds).
        relkeys: distinct version-relative keys, in the order the read script returns them.
        families: position in ``FAMILIES`` of the family of each key in ``relkeys``.
        index: family x attempt -> position in ``relkeys`` of the attempt's key.
    """

    t_us: np.ndarray
    relkeys: list[str]
    families: np.ndarray
    index: np.ndarray


def plan(attempts: Sequence[Mapping[str, Any]], now: datetime | None) -> Plan:
    """Validate the attempts and list the keys to read.

    Raises:
        ValueError: naming the attempt and field that is missing or not a valid time.
    """
    slots: dict[str, int] = {}
    families: list[int] = []
    index: list[int] = []
    times: list[int] = []
    for row, attempt in enumerate(attempts):
        times.append(epoch_us(now if now is not None else _field(attempt, "event_time", row)))
        texts = [key_text(_field(attempt, k, row)) for k in _KEY_FIELDS]
        for family, (head, parts) in enumerate(_FAMILY_PARTS):
            rel = head + SEP.join([texts[i] for i in parts])
            slot = slots.get(rel)
            if slot is None:
                slot = slots[rel] = len(slots)
                families.append(family)
            index.append(slot)
    by_family = np.array(index, dtype=np.int64).reshape(len(attempts), len(FAMILIES)).T
    return Plan(np.array(times, dtype=np.int64), list(slots), np.array(families, int), by_family)


def plan_columns(columns: Mapping[str, Any], t_us: np.ndarray) -> Plan:
    """The keys to read for attempts given as columns (e.g. a validated API request).

    Gives the same plan as :func:`plan` of the same attempts as records, key for key and in
    the same order, with the per-value work done once per column instead of per family.

    Raises:
        ValueError: naming the attempt and key field that is missing.
    """
    texts = {k: _key_texts(columns[k], k) for k in _KEY_FIELDS}
    rels = []
    for head, parts in _FAMILY_PARTS:
        names = [_KEY_FIELDS[i] for i in parts]
        if len(names) == 1:
            rels.append([head + v for v in texts[names[0]]])
        else:
            rels.append([head + SEP.join(v) for v in zip(*(texts[n] for n in names), strict=True)])
    slots: dict[str, int] = {}
    families: list[int] = []
    index: list[int] = []
    for row_keys in zip(*rels, strict=True):
        for family, rel in enumerate(row_keys):
            slot = slots.get(rel)
            if slot is None:
                slot = slots[rel] = len(slots)
                families.append(family)
            index.append(slot)
    by_family = np.array(index, dtype=np.int64).reshape(len(t_us), len(FAMILIES)).T
    return Plan(np.asarray(t_us, dtype=np.int64), list(slots), np.array(families, int), by_family)


def _key_texts(values: Sequence[Any], name: str) -> list[str]:
    """:func:`key_text` of a whole column, without a call per value in the usual case."""
    items = values.tolist() if isinstance(values, np.ndarray) else list(values)
    kinds = {type(v) for v in items}
    if kinds == {str}:
        joined = "".join(items)
        if "\\" not in joined and SEP not in joined:
            return items
    if kinds == {bool}:
        return ["1" if v else "0" for v in items]
    if type(None) in kinds:
        raise ValueError(f"attempt {items.index(None)}: field '{name}' is missing")
    return [key_text(v) for v in items]


def _field(attempt: Mapping[str, Any], name: str, row: int) -> Any:
    value = attempt.get(name) if isinstance(attempt, Mapping) else None
    if value is None:
        raise ValueError(f"attempt {row}: field '{name}' is missing")
    return value


def default_counts(size: int) -> dict[str, np.ndarray]:
    """Counters of attempts with no history: zeros, NaN last time, None last code."""
    out: dict[str, np.ndarray] = {
        "card_last_us": np.full(size, np.nan),
        "card_last_code": np.full(size, None, dtype=object),
    }
    for family in FAMILIES:
        for window in family.windows:
            for c in family.counters:
                out[f"{family.name}_{window.name}_{c}"] = np.zeros(size)
    return out


@dataclass(frozen=True)
class KeyData:
    """One stored hash, parsed: what a request needs of one key, and what a cache keeps.

    Attributes:
        life: lifetime counters in the family's order, padded to ``WIDTH``.
        last_us: time of the card's last attempt (NaN when unknown or not a card key).
        last_code: response code of the card's last attempt (None when unknown).
        tiles: ``(tile group << 32) + tile start`` of each stored tile, sorted.
        values: counters of each tile (rows in ``tiles`` order, padded to ``WIDTH``).
    """

    life: np.ndarray
    last_us: float
    last_code: str | None
    tiles: np.ndarray
    values: np.ndarray


@dataclass
class _Parsed:
    life: np.ndarray  # key slot x counter (the family's order, padded to WIDTH)
    tile_keys: np.ndarray  # sorted ((slot * groups + tile group) << 32) + tile start
    tile_values: np.ndarray  # counters of each tile in tile_keys order
    last_us: np.ndarray
    last_code: np.ndarray

    @classmethod
    def empty(cls, size: int) -> _Parsed:
        """``size`` keys with no counters, no tiles and no last attempt."""
        return cls(
            np.zeros((size, WIDTH)), np.zeros(0, np.int64), np.zeros((0, WIDTH)),
            np.full(size, np.nan), np.full(size, None, dtype=object),
        )  # fmt: skip


@dataclass(frozen=True)
class _Fields:
    """Every field of every hash of a request, flattened: parsed in bulk, not field by field."""

    slots: np.ndarray  # key slot of each field
    names: list[bytes]
    values: list[bytes]


def split_blobs(reply: bytes, keys: int) -> list[bytes]:
    """The per-key hashes of the read script's single reply (``KEY_SEP`` between keys).

    Raises:
        ValueError: the reply does not hold one hash per key.
    """
    blobs = reply.split(KEY_SEP) if keys else []
    if len(blobs) != keys:
        raise ValueError(f"read script returned {len(blobs)} hashes for {keys} keys")
    return blobs


def _flatten(blobs: Sequence[bytes | None]) -> _Fields:
    flat: list[bytes] = []
    per_slot = np.zeros(len(blobs), dtype=np.intp)
    for slot, blob in enumerate(blobs):
        if blob:
            parts = blob.split(FIELD_SEP)
            if len(parts) % 2:
                raise ValueError(f"hash {slot}: odd number of fields and values")
            per_slot[slot] = len(parts) // 2
            flat.extend(parts)
    slots = np.repeat(np.arange(len(blobs)), per_slot)
    return _Fields(slots, flat[0::2], flat[1::2])


def _numbers(values: list[bytes], sep: bytes, dtype: type) -> np.ndarray:
    """The ``sep``-separated numbers of many fields, parsed in one pass."""
    if not values:
        return np.zeros(0, dtype=dtype)
    parts = sep.join(values).split(sep)
    return np.fromiter(map(dtype, parts), dtype=dtype, count=len(parts))


def _tiles(families: np.ndarray, f: _Fields, at: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Composite keys and counter rows (padded to ``WIDTH``) of the tile fields at ``at``."""
    pairs = _numbers([f.names[i] for i in at], b":", int)
    if len(pairs) != 2 * len(at):
        raise ValueError("malformed tile field name")
    size, start = pairs.reshape(-1, 2).T
    group = np.minimum(np.searchsorted(_TILE_SIZES, size), len(_TILES) - 1)
    if not np.array_equal(_TILE_SIZES[group], size):
        raise ValueError("unknown tile size in a stored field")
    slots = f.slots[at]
    keys = ((slots * len(_TILES) + group) << 32) + start
    fams = families[slots]
    values = np.zeros((len(at), WIDTH))
    for family in np.unique(fams).tolist():
        mine = np.flatnonzero(fams == family)
        width = len(FAMILIES[family].counters)
        sums = _numbers([f.values[at[i]] for i in mine.tolist()], b",", float)
        values[mine, :width] = sums.reshape(-1, width)
    return keys, values


def _life(families: np.ndarray, f: _Fields, at: list[int], out: _Parsed) -> None:
    """Lifetime counters, last time and last code of the card, from the fields at ``at``."""
    counters: list[int] = []
    columns: list[int] = []
    last_us: list[int] = []
    for i in at:
        name = f.names[i]
        column = _FIELDS[families[f.slots[i]]].get(name)
        if column is not None:
            counters.append(i)
            columns.append(column)
        elif name == b"last_us":
            last_us.append(i)
        elif name == b"last_code":
            out.last_code[f.slots[i]] = f.values[i].decode()
    values = _numbers([f.values[i] for i in counters], b",", float)
    if len(values) != len(counters):
        raise ValueError("malformed lifetime counter")
    out.life[f.slots[counters], columns] = values
    out.last_us[f.slots[last_us]] = [float(f.values[i]) for i in last_us]


@dataclass(frozen=True)
class Hashes:
    """Hashes of one read, parsed in bulk (slot = position in the read).

    Attributes:
        life: slot x lifetime counter (the family's order, padded to ``WIDTH``).
        last_us: time of the card's last attempt per slot (NaN when unknown).
        last_code: response code of the card's last attempt per slot (None when unknown).
        keys: ``((slot * groups + tile group) << 32) + tile start`` of every tile, sorted.
        values: counters of each tile, in ``keys`` order (padded to ``WIDTH``).
    """

    life: np.ndarray
    last_us: np.ndarray
    last_code: np.ndarray
    keys: np.ndarray
    values: np.ndarray

    @cached_property
    def _bounds(self) -> list[int]:
        """Where each slot's tiles start in ``keys`` (one more entry: the end)."""
        groups = len(_TILES)
        return np.searchsorted(self.keys >> 32, np.arange(len(self.life) + 1) * groups).tolist()

    def key(self, slot: int) -> KeyData:
        """The parsed hash at ``slot`` on its own (copies: safe to keep in a cache)."""
        groups = len(_TILES)
        lo, hi = self._bounds[slot], self._bounds[slot + 1]
        return KeyData(
            self.life[slot].copy(), float(self.last_us[slot]), self.last_code[slot],
            self.keys[lo:hi] - ((slot * groups) << 32), self.values[lo:hi].copy(),
        )  # fmt: skip


def parse_hashes(families: np.ndarray, blobs: Sequence[bytes | None]) -> Hashes:
    """The hashes of a read, parsed in bulk.

    Args:
        families: position in ``FAMILIES`` of each hash's family.
        blobs: each hash flattened by the read script (empty or None when the key is absent).

    Raises:
        ValueError: a stored field is malformed.
    """
    out = _Parsed.empty(len(blobs))
    f = _flatten(blobs)
    tile = [b":" in name for name in f.names]
    _life(families, f, [i for i, t in enumerate(tile) if not t], out)
    keys, values = _tiles(families, f, [i for i, t in enumerate(tile) if t])
    order = np.argsort(keys, kind="stable")
    return Hashes(out.life, out.last_us, out.last_code, keys[order], values[order])


def _merge(
    size: int, read: Hashes, read_slots: np.ndarray, known: Mapping[int, KeyData]
) -> _Parsed:
    """The arrays window sums read, for a plan of ``size`` keys.

    Args:
        size: number of keys of the plan.
        read: the hashes read from Redis, at plan slots ``read_slots``.
        known: plan slot -> hash parsed earlier (a cache), for the slots not read.
    """
    groups = len(_TILES)
    out = _Parsed.empty(size)
    out.life[read_slots] = read.life
    out.last_us[read_slots] = read.last_us
    out.last_code[read_slots] = read.last_code
    head = read.keys >> 32
    moved = (read_slots[head // groups] * groups + head % groups) << 32
    keys = [moved + (read.keys & 0xFFFFFFFF)]
    values = [read.values]
    for slot, data in known.items():
        out.life[slot] = data.life
        out.last_us[slot] = data.last_us
        out.last_code[slot] = data.last_code
        keys.append(data.tiles + ((slot * groups) << 32))
        values.append(data.values)
    all_keys = np.concatenate(keys)
    order = np.argsort(all_keys, kind="stable")  # keys are unique: one field per tile
    out.tile_keys = all_keys[order]
    out.tile_values = np.concatenate(values)[order]
    return out


def counts_from_hashes(
    p: Plan,
    read: Hashes,
    read_slots: np.ndarray | None = None,
    known: Mapping[int, KeyData] | None = None,
) -> dict[str, np.ndarray]:
    """Window counters of every attempt of ``p``.

    Args:
        p: the plan of the request.
        read: hashes read for the plan's keys at ``read_slots`` (default: all, in order).
        read_slots: plan slot of each hash of ``read``.
        known: plan slot -> hash parsed earlier, for every slot not in ``read_slots``.

    Raises:
        ValueError: the hashes do not cover the plan's keys exactly once.
    """
    size = len(p.relkeys)
    slots = np.arange(size) if read_slots is None else np.asarray(read_slots, dtype=np.int64)
    known = known or {}
    if len(slots) != len(read.life) or len(slots) + len(known) != size:
        raise ValueError(f"{len(slots)} read and {len(known)} known hashes for {size} keys")
    parsed = _merge(size, read, slots, known)
    life = parsed.life[p.index]  # family x attempt x counter
    windowed = _window_sums(parsed, p.index, p.t_us)  # finite window x attempt x counter
    card = p.index[_FAMILY_AT["card"]]
    out: dict[str, np.ndarray] = {
        "card_last_us": parsed.last_us[card],
        "card_last_code": parsed.last_code[card],
    }
    for i, family in enumerate(FAMILIES):
        for window in family.windows:
            sums = life[i] if window.lifetime else windowed[_FINITE_AT[family.name, window.name]]
            for j, c in enumerate(family.counters):
                out[f"{family.name}_{window.name}_{c}"] = sums[:, j]
    return out


def counts_from_blobs(p: Plan, blobs: Sequence[bytes | None]) -> dict[str, np.ndarray]:
    """Window counters of every attempt from the flattened hashes (one per key of ``p``).

    Raises:
        ValueError: a stored field is malformed.
    """
    return counts_from_hashes(p, parse_hashes(p.families, blobs))


_FAMILY_AT = {f.name: i for i, f in enumerate(FAMILIES)}
# Every finite family window: its family's row, tile group, tile and length (seconds).
_FINITE = [
    (i, _TILES.index(w.tile), w.tile, w.seconds, f.name, w.name)
    for i, f in enumerate(FAMILIES)
    for w in f.windows
    if not w.lifetime
]
_FINITE_AT = {(spec[4], spec[5]): k for k, spec in enumerate(_FINITE)}
_F_FAMILY, _F_GROUP, _F_TILE, _F_SECONDS = (
    np.array([spec[k] for spec in _FINITE], dtype=np.int64)[:, None] for k in range(4)
)


def _run_suffix_sums(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each tile, the sum of its counters and those after it in its (key, group) run.

    Runs are laid out as the rows of a zero-padded matrix and summed from their ends, so a
    run's sums depend on its own tiles only (the padding adds exact zeros). One extra zero row
    at the end stands for "no tile".
    """
    n = len(keys)
    out = np.zeros((n + 1, WIDTH))
    if not n:
        return out
    run_of = keys >> 32
    starts = np.flatnonzero(np.r_[True, run_of[1:] != run_of[:-1]])
    run = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
    position = np.arange(n) - starts[run]
    width = int(position.max()) + 1
    grid = np.zeros((len(starts), width, WIDTH))
    grid[run, position] = values
    grid = np.cumsum(grid[:, ::-1], axis=1)[:, ::-1]
    out[:n] = grid[run, position]
    return out


def _window_sums(parsed: _Parsed, rows: np.ndarray, t_us: np.ndarray) -> np.ndarray:
    """Sums of the tiles starting at or after ``floor(t/s)*s - W``, for every finite window."""
    group = rows[_F_FAMILY[:, 0]] * len(_TILES) + _F_GROUP
    start = (t_us[None, :] // (_F_TILE * US)) * _F_TILE - _F_SECONDS  # epoch seconds
    lo = np.searchsorted(parsed.tile_keys, ((group << 32) + start).ravel(), side="left")
    hi = np.searchsorted(parsed.tile_keys, ((group + 1) << 32).ravel(), side="left")
    # A window is always a suffix of its (key, tile group) run of tiles (``hi`` is the run's
    # end), so sums come from suffix sums computed run by run: each run is a row of its own,
    # and an attempt's counters do not depend on what else is in its batch.
    suffix = _run_suffix_sums(parsed.tile_keys, parsed.tile_values)
    sums = suffix[np.minimum(lo, len(suffix) - 1)]
    sums[hi <= lo] = 0.0
    return sums.reshape(len(_FINITE), len(t_us), WIDTH)
