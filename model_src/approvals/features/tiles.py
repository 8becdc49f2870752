"""Key layout and tile arithmetic shared by the materializer and the online reader.

Per family key, one Redis string ``{prefix}:{version}:{family}:{key values joined by \\x1f}``
holds fixed-size little-endian records (:data:`RECORD`: two int64 and ``WIDTH`` float64
counters, the family's counters first): a head record with the key's lifetime counters (and,
for cards, the time and response code of the last attempt), then one record per recent tile,
sorted by tile size and start, holding the sums of that tile and every later tile of its size.
For a request at t after the state's end, a window W with tile s is the sum of the tiles
starting at or after ``floor(t/s)*s - W``: the suffix sum stored with the first of them. That
is exactly what :func:`approvals.features.offline.query_counts` computes from the same state,
and a reader turns a whole request's values into arrays with one ``numpy.frombuffer``.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from approvals.features.definitions import COUNTERS, FAMILIES, Family

LAYOUT = 2
SEP = "\x1f"  # between the values of a composite key
US = 1_000_000
WIDTH = len(COUNTERS)
RECORD = np.dtype([("a", "<i8"), ("b", "<i8"), ("v", "<f8", (WIDTH,))])
CODE = np.dtype("S8")  # a response code in the ``b`` field of a head record
NO_TIME = np.iinfo(np.int64).min  # ``a`` of a head record: no last attempt
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
# Tile sizes (seconds) of every finite window; a tile's group is the position of its size.
TILES = tuple(sorted({w.tile for f in FAMILIES for w in f.windows if not w.lifetime}))
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
    times = [
        epoch_us(now if now is not None else _field(attempt, "event_time", row))
        for row, attempt in enumerate(attempts)
    ]
    texts = {
        k: [key_text(_field(attempt, k, row)) for row, attempt in enumerate(attempts)]
        for k in _KEY_FIELDS
    }
    return _plan_keys(texts, np.array(times, dtype=np.int64))


def plan_columns(columns: Mapping[str, Any], t_us: np.ndarray) -> Plan:
    """The keys to read for attempts given as columns (e.g. a validated API request).

    Gives the same plan as :func:`plan` of the same attempts as records, with the per-value
    work done once per column.

    Raises:
        ValueError: naming the attempt and key field that is missing.
    """
    texts = {k: _key_texts(columns[k], k) for k in _KEY_FIELDS}
    return _plan_keys(texts, np.asarray(t_us, dtype=np.int64))


def plan_row(attempt: Mapping[str, Any], t_us: int) -> Plan:
    """:func:`plan_columns` of one attempt given as values (the single-attempt serving path).

    Raises:
        ValueError: naming the key field that is missing.
    """
    texts = []
    for name in _KEY_FIELDS:
        value = attempt.get(name)
        if value is None:
            raise ValueError(f"attempt 0: field '{name}' is missing")
        texts.append(value if type(value) is str and _plain(value) else key_text(value))
    relkeys = [head + SEP.join([texts[i] for i in parts]) for head, parts in _FAMILY_PARTS]
    return Plan(np.array([t_us], dtype=np.int64), relkeys, _ROW_FAMILIES, _ROW_INDEX)


def _plain(text: str) -> bool:
    """Whether :func:`key_text` leaves ``text`` as it is (no escape needed)."""
    return "\\" not in text and SEP not in text


# One attempt: one key per family, in family order.
_ROW_FAMILIES = np.arange(len(FAMILIES))
_ROW_INDEX = _ROW_FAMILIES[:, None]
_ROW_FAMILIES.flags.writeable = False
_ROW_INDEX.flags.writeable = False


def _plan_keys(texts: Mapping[str, list[str]], t_us: np.ndarray) -> Plan:
    """The plan of attempts given as key texts per key field: keys family by family, each
    family's distinct keys in order of first appearance."""
    relkeys: list[str] = []
    families: list[int] = []
    index = np.empty((len(FAMILIES), len(t_us)), dtype=np.int64)
    for family, (head, parts) in enumerate(_FAMILY_PARTS):
        values = [texts[_KEY_FIELDS[i]] for i in parts]
        joined = values[0] if len(values) == 1 else map(SEP.join, zip(*values, strict=True))
        rels = list(map(head.__add__, joined))
        distinct = dict.fromkeys(rels)
        slot = dict(zip(distinct, range(len(relkeys), len(relkeys) + len(distinct)), strict=True))
        index[family] = np.fromiter(map(slot.__getitem__, rels), np.int64, len(rels))
        relkeys.extend(distinct)
        families.extend([family] * len(distinct))
    return Plan(t_us, relkeys, np.array(families, dtype=int), index)


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
class Records:
    """The stored values of one read, parsed in bulk (position = order of the values read).

    Attributes:
        life: position x lifetime counter (the family's order, padded to ``WIDTH``).
        last_us: time of the card's last attempt per position (NaN when unknown).
        last_code: response code of the card's last attempt per position (None when unknown).
        tile_keys: ``((position * runs + run) << 32) + tile start`` of every record, ascending;
            run 0 is a key's head record (start 0), run g + 1 its tiles of tile group g.
        tile_sums: the counters of each record (a tile's suffix sums), in ``tile_keys`` order.
    """

    life: np.ndarray
    last_us: np.ndarray
    last_code: np.ndarray
    tile_keys: np.ndarray
    tile_sums: np.ndarray


def pack(heads: np.ndarray, tiles: np.ndarray, owner: np.ndarray) -> list[bytes]:
    """The stored value of each key: its head record, then its tile records.

    Args:
        heads: one :data:`RECORD` per key: ``a`` the time of the card's last attempt (epoch
            microseconds, :data:`NO_TIME` when none), ``b`` its response code (ASCII, see
            :func:`code_field`), ``v`` the lifetime counters.
        tiles: one :data:`RECORD` per stored tile: ``a`` its tile group (position in the tile
            sizes), ``b`` its start (epoch seconds), ``v`` the counters of this tile and of
            every later tile of its group; sorted by owner, group and start.
        owner: position in ``heads`` of the key each tile belongs to.

    Raises:
        ValueError: the tiles are not sorted by owner, group and start.
    """
    owner = np.asarray(owner, dtype=np.int64)
    order = (((owner * len(TILES)) + tiles["a"]) << 32) + tiles["b"]
    if np.any(order[1:] <= order[:-1]):
        raise ValueError("tiles must be sorted by key, tile group and start, without repeats")
    counts = 1 + np.bincount(owner, minlength=len(heads))
    ends = np.cumsum(counts)
    starts = ends - counts
    out = np.empty(int(ends[-1]) if len(ends) else 0, RECORD)
    is_head = np.zeros(len(out), dtype=bool)
    is_head[starts] = True
    out[starts] = heads
    out[~is_head] = tiles
    buf, size = out.tobytes(), RECORD.itemsize
    return [buf[s * size : e * size] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def code_field(codes: Sequence[str | None]) -> np.ndarray:
    """Response codes as the ``b`` field of head records (empty for None).

    Raises:
        ValueError: a code is not ASCII or longer than 8 characters.
    """
    texts = [c or "" for c in codes]
    if any(len(c) > CODE.itemsize or not c.isascii() for c in texts):
        raise ValueError("response codes must be ASCII and at most 8 characters")
    return np.array(texts, dtype=CODE).view("<i8")


def unpack(data: bytes, lengths: np.ndarray) -> Records:
    """The values of a read, concatenated in ``data`` (``lengths`` bytes each, 0 when absent).

    The records are not copied: counters are read where they lie in ``data``.

    Raises:
        ValueError: the values are not whole records, or hold tiles out of order or of an
            unknown size (not what :func:`pack` writes).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if int(lengths.sum()) != len(data) or np.any(lengths % RECORD.itemsize):
        raise ValueError("stored values are not whole records")
    counts = lengths // RECORD.itemsize
    # plain 2-D views (the structured dtype's strided fields are several times slower)
    numbers = np.frombuffer(data, "<i8").reshape(-1, 2 + WIDTH)
    counters = np.frombuffer(data, "<f8").reshape(-1, 2 + WIDTH)[:, 2:]
    present = np.flatnonzero(counts)
    heads_at = (np.cumsum(counts) - counts)[present]
    size = len(lengths)
    life = np.zeros((size, WIDTH))
    life[present] = counters[heads_at]
    last_us = np.full(size, np.nan)
    times = numbers[heads_at, 0]
    known = times != NO_TIME
    last_us[present[known]] = times[known]
    last_code = np.full(size, None, dtype=object)
    codes = numbers[heads_at, 1].view(CODE)
    coded = codes != b""
    last_code[present[coded]] = codes[coded].astype(str).tolist()
    group, start = numbers[:, 0].copy(), numbers[:, 1].copy()
    bad = (group < 0) | (group >= len(TILES)) | (start < 0) | (start >= 1 << 32)
    bad[heads_at] = False
    if np.any(bad):
        raise ValueError("stored tile of an unknown size or start")
    run = group + 1
    run[heads_at], start[heads_at] = 0, 0
    owner = np.repeat(np.arange(size), counts)
    keys = ((owner * _RUNS + run) << 32) + start
    if np.any(keys[1:] <= keys[:-1]):
        raise ValueError("stored tiles out of order")
    return Records(life, last_us, last_code, keys, counters)


_RUNS = len(TILES) + 1  # runs of records per key: its head (run 0), then one per tile size


def counts_from_records(
    p: Plan, records: Records, positions: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Window counters of every attempt of ``p``.

    Args:
        p: the plan of the request.
        records: the stored values of the plan's keys.
        positions: position in ``records`` of each plan slot (default: slot order).

    Raises:
        ValueError: the records do not cover the plan's keys.
    """
    if len(records.life) != len(p.relkeys):
        raise ValueError(f"{len(records.life)} stored values for {len(p.relkeys)} keys")
    rows = p.index if positions is None else np.asarray(positions)[p.index]
    life = records.life[rows]  # family x attempt x counter
    windowed = _window_sums(records, rows, p.t_us)  # finite window x attempt x counter
    card = rows[_FAMILY_AT["card"]]
    out: dict[str, np.ndarray] = {
        "card_last_us": records.last_us[card],
        "card_last_code": records.last_code[card],
    }
    for i, family in enumerate(FAMILIES):
        for window in family.windows:
            sums = life[i] if window.lifetime else windowed[_FINITE_AT[family.name, window.name]]
            for j, c in enumerate(family.counters):
                out[f"{family.name}_{window.name}_{c}"] = sums[:, j]
    return out


_FAMILY_AT = {f.name: i for i, f in enumerate(FAMILIES)}
# Every finite family window: its family's row, tile group, tile and length (seconds).
_FINITE = [
    (i, TILES.index(w.tile), w.tile, w.seconds, f.name, w.name)
    for i, f in enumerate(FAMILIES)
    for w in f.windows
    if not w.lifetime
]
_FINITE_AT = {(spec[4], spec[5]): k for k, spec in enumerate(_FINITE)}
_F_FAMILY, _F_GROUP, _F_TILE, _F_SECONDS = (
    np.array([spec[k] for spec in _FINITE], dtype=np.int64)[:, None] for k in range(4)
)


def _window_sums(records: Records, rows: np.ndarray, t_us: np.ndarray) -> np.ndarray:
    """Sums of the tiles starting at or after ``floor(t/s)*s - W``, for every finite window.

    A window is a suffix of its key's tiles of one size, so its sum is the suffix sum stored
    with the first tile in it (zero when there is none): an attempt's counters do not depend
    on what else is in its batch.
    """
    run = (rows[_F_FAMILY[:, 0]] * _RUNS + _F_GROUP + 1).ravel()
    start = (t_us[None, :] // (_F_TILE * US)) * _F_TILE - _F_SECONDS  # epoch seconds
    keys = records.tile_keys
    sums = np.zeros((len(run), WIDTH))
    if len(keys):
        wanted = (run << 32) + np.maximum(start, 0).ravel()
        at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        inside = (keys[at] >= wanted) & ((keys[at] >> 32) == run)
        sums[inside] = records.tile_sums[at[inside]]
    return sums.reshape(len(_FINITE), len(t_us), WIDTH)


@dataclass(frozen=True)
class Value:
    """One stored value parsed for the single-attempt path (plain Python numbers).

    Attributes:
        life: the head record's counters (lifetime sums).
        last_us: time of the card's last attempt (NaN when unknown).
        last_code: response code of the card's last attempt (None when unknown).
        starts: per tile group, the starts (epoch seconds) of the key's tiles, ascending.
        sums: per tile group, each tile's counters (suffix sums), in ``starts`` order.
    """

    life: tuple[float, ...]
    last_us: float
    last_code: str | None
    starts: tuple[list[int], ...]
    sums: tuple[list[tuple[float, ...]], ...]


_RECORD_STRUCT = struct.Struct(f"<qq{WIDTH}d")
_CODE_BYTES = struct.Struct("<q")


def parse_value(data: bytes) -> Value:
    """A stored value as :class:`Value`: what :func:`unpack` reads from it, for one key.

    Raises:
        ValueError: the value is empty, not whole records, or holds tiles out of order or of
            an unknown size (as :func:`unpack` refuses).
    """
    if not data or len(data) % RECORD.itemsize:
        raise ValueError("stored values are not whole records")
    records = _RECORD_STRUCT.iter_unpack(data)
    head = next(records)
    starts: tuple[list[int], ...] = tuple([] for _ in TILES)
    sums: tuple[list[tuple[float, ...]], ...] = tuple([] for _ in TILES)
    last = -1
    for record in records:
        group, start = record[0], record[1]
        if not (0 <= group < len(TILES) and 0 <= start < 1 << 32):
            raise ValueError("stored tile of an unknown size or start")
        order = (group << 32) + start
        if order <= last:
            raise ValueError("stored tiles out of order")
        last = order
        starts[group].append(start)
        sums[group].append(record[2:])
    code = _CODE_BYTES.pack(head[1]).rstrip(b"\0")
    return Value(
        life=head[2:],
        last_us=float("nan") if head[0] == NO_TIME else float(head[0]),
        last_code=code.decode("ascii") if code else None,
        starts=starts,
        sums=sums,
    )


def row_counts(p: Plan, values: Sequence[Value | None]) -> dict[str, float | str | None]:
    """Window counters of the one attempt of ``p`` (:func:`plan_row`), as plain values.

    Equal to row 0 of :func:`counts_from_records` of the same stored values, key by key.

    Args:
        p: the plan of one attempt.
        values: the parsed value of each plan key (None when absent).
    """
    t_us = int(p.t_us[0])
    card = values[_FAMILY_AT["card"]]
    out: dict[str, float | str | None] = {
        "card_last_us": card.last_us if card is not None else float("nan"),
        "card_last_code": card.last_code if card is not None else None,
    }
    for value, windows in zip(values, _ROW_WINDOWS, strict=True):
        for names, group, tile, seconds in windows:
            sums = _ZEROS
            if value is None:
                pass
            elif group < 0:
                sums = value.life
            else:
                starts = value.starts[group]
                at = bisect.bisect_left(starts, max((t_us // (tile * US)) * tile - seconds, 0))
                if at < len(starts):
                    sums = value.sums[group][at]
            out.update(zip(names, sums, strict=False))  # the family's counters come first
    return out


_ZEROS = (0.0,) * WIDTH
# Per family, per window: the names of its counters (the family's counters, in record order),
# its tile group (-1 for the lifetime window), tile and length in seconds.
_ROW_WINDOWS = [
    [
        (tuple(f"{f.name}_{w.name}_{c}" for c in f.counters),
         TILES.index(w.tile) if not w.lifetime else -1, w.tile, w.seconds)
        for w in f.windows
    ]
    for f in FAMILIES
]  # fmt: skip
