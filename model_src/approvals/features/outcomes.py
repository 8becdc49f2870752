"""Live outcomes: labelled attempts applied to the live online version, as materialize would.

:func:`apply_outcomes` validates a batch of labelled attempts (contract rows), adds up in numpy
what the batch brings to every family key it touches (the lifetime sums; per tile group, for
each tile the batch touches, the sums of that tile and every later one; for cards the last
outcome's time and code) and sends that in one ``EVALSHA`` of :data:`APPLY_SCRIPT`. The script
resolves the live version (``{prefix}:current``) itself, finds which attempts that version has
not seen (a marker per ``attempt_id``) and are not late, and, when those are the ones the sums
were made for, merges the sums into each key: a stored tile gains the batch's sums from its
start on (tiles hold suffix sums, see :mod:`approvals.features.tiles`), a new tile those plus
the stored sums after it; only the counters of a record are unpacked and packed again. When it
finds duplicates or late outcomes the call did not expect, it writes nothing and says which:
a second call carries the sums of the others (:meth:`Prepared.again`). Readers then answer, for
any request after every outcome applied, exactly what the offline SQL gives on the history plus
these outcomes (integer counters bit for bit; the ``*slog`` sums are added in another order, so
they agree to rounding).

- **All or nothing**: the script reads and checks everything before its first write, so a bad
  stored value or a failing command leaves the version untouched (a Lua script is not rolled
  back: nothing may fail after the first write, and nothing does).
- **Ageing**: the reference time is the newest event time the version knows (its state end,
  the newest outcome applied, this batch). A rewritten key drops tiles no request after it can
  read (older than the family's longest window of that tile size, as materialize drops them).
  An outcome older than the oldest tile any family keeps (7 days, aligned to 6-hour tiles) is
  ``late``: ignored, so every family's lifetime stays consistent and no marker has to outlive
  the window. New keys expire with the pointer (its PTTL), rewritten ones keep their TTL.
- **Readers**: each write bumps the meta field ``gen``, which the online reader holds shared
  values under, so a write is seen by the next read.

Measured on the 2-core dev machine against redis-server 7.0 (``make bench-outcomes``;
docs/serving.md, "Live outcomes"): batches of 500 apply at about 9,000 outcomes/s (53 to 55 ms
a batch, 11 to 12 ms of it in Python; 35x the same run's round-trip floor; before this merge
2,900 to 3,400 outcomes/s, 112 to 116x), a batch touching about 1,900 keys and 12,600 stored
records. MEMORY USAGE per key is unchanged, mean: card 589 B, bin_route 574 B, bin 1,020 B,
lifetime-only families about 210 B; a dedup marker 120 B. At about 3 attempts per card a week
that is about 1 GB per million cards (card keys and markers).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from string import Template
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from approvals import codes
from approvals.contract import COLUMNS, MISSING, AttemptColumns, validate_request
from approvals.contract.table import Decoded, Rules, check
from approvals.errors import ContractError, UserError
from approvals.features.definitions import COUNTERS, FAMILIES
from approvals.features.tiles import (
    RECORD,
    TILES,
    US,
    WIDTH,
    Plan,
    definitions_hash,
    plan_columns,
    tile_spans,
)
from approvals.features.versions import DEFAULT_TTL, client

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from approvals.features.redis_settings import RedisSettings

__all__ = [
    "APPLY_SCRIPT",
    "MAX_BATCH",
    "ApplyResult",
    "OutcomeWriter",
    "apply_outcomes",
    "prepare",
    "validate_outcomes",
    "validate_reports",
]

MAX_BATCH = 1000
MARKER_TTL = DEFAULT_TTL  # a version's keys live this long by default; markers as long
LABELLED = Rules(limits=True, unique_ids=False, labels=True)  # repeats are duplicates, not errors
FINITE = sorted({(w.tile, w.seconds) for f in FAMILIES for w in f.windows if not w.lifetime})
_CARD = next(i for i, f in enumerate(FAMILIES) if f.name == "card")
_K = np.array([len(f.counters) for f in FAMILIES])  # counters stored per family
_COLS = [[list(COUNTERS).index(c) for c in f.counters] for f in FAMILIES]
_SPANS = [[(TILES.index(t), t, s) for t, s in sorted(tile_spans(f).items())] for f in FAMILIES]
# Each family's counters by position in COUNTERS, then a zero column (WIDTH) up to WIDTH.
_GATHER = np.array([cols + [WIDTH] * (WIDTH - len(cols)) for cols in _COLS])
# Each family's tile groups: family, group, tile size and longest window.
_P_FAM, _P_GROUP, _P_TILE, _P_SPAN = np.array(
    [(f, *span) for f, spans in enumerate(_SPANS) for span in spans]
).T
_HEAD = np.where(np.arange(len(FAMILIES)) == _CARD, 2, 0)  # 8-byte slots of a key's new head
# Per key: where its increments start in ARGV[11] (1-based byte), the byte length of its name
# in ARGV[8], how many batch tiles it has per tile group.
INDEX = np.dtype([("at", "<u4"), ("size", "<u2"), ("m", "<u2", (len(TILES),))])
_MS = ", ".join(f"m{g}" for g in range(len(TILES)))
_TRIES = 5  # script calls per batch: statuses that keep changing mean concurrent writers

# The merge of one tile group of a key with K counters: its stored records (from ``pos``, the
# group's, at or after the cut) and the batch's tiles (``m`` entries at ``epos`` of ARGV[11]:
# start, then the batch's suffix sums from that tile on) in start order. A stored tile gains
# the batch's suffix sums from its start on, a new one those plus the stored suffix sums after
# it. Only the counters are unpacked and packed again: each record goes to ``parts`` as the
# previous record's pad and its header (one cached string), then its counters.
_RUN = """
RUN[$K] = function(value, pos, vend, g, cut, epos, m, np)
  local eend, H, last = epos + m * $ES, HDR[$K][g], -1
  local has, hasb, s, b, $C, $I = false, false
  while pos < vend do
    local sg
    sg, s, $C = sunpack('<i8i8$D', value, pos)
    if sg ~= g then break end
    if s >= cut then has = true break end
    pos = pos + REC
  end
  while epos < eend do
    b, $I = sunpack('<d$D', ENT, epos)
    epos = epos + $ES
    if b >= cut then hasb = true break end
  end
  while has or hasb do
    if has and (not hasb or s <= b) then
      if s <= last then return nil end
      last = s
      if hasb then
        parts[np + 1], parts[np + 2] = H[s] or header(H, $K, g, s), spack('<$D', $CI)
        if s == b then
          hasb = epos < eend
          if hasb then b, $I = sunpack('<d$D', ENT, epos) epos = epos + $ES end
        end
      else
        parts[np + 1], parts[np + 2] = H[s] or header(H, $K, g, s), spack('<$D', $C)
      end
      np, pos, has = np + 2, pos + REC, false
      if pos < vend then
        local sg
        sg, s, $C = sunpack('<i8i8$D', value, pos)
        has = sg == g
      end
    else
      if has then parts[np + 2] = spack('<$D', $CI)
      else parts[np + 2] = spack('<$D', $I) end
      parts[np + 1], np = H[b] or header(H, $K, g, b), np + 2
      hasb = epos < eend
      if hasb then b, $I = sunpack('<d$D', ENT, epos) epos = epos + $ES end
    end
  end
  return np, pos
end
"""
# The new value of a key of family F: its head (for cards the batch's last outcome if not
# older than the stored one), lifetime sums plus the batch's, then each tile group merged.
_MERGE = """
MERGE[$F] = function(value, epos, $M)
  local vend, head, pos, np, cut = 1, NO_HEAD, REC + 1, 2, CUT[$F]
  local $L = $Z
  if value then
    vend = #value + 1
    if vend == 1 or #value % REC ~= 0 then return nil end
    head = ssub(value, 1, 16)
    $L = sunpack('<$D', value, 17)
  end$CARD
  local $I = sunpack('<$D', ENT, epos)
  if vend <= pos and $MZ then return head .. spack('<$D', $LI) .. PAD[$K] end
  parts[1], parts[2] = head, spack('<$D', $LI)
  epos = epos + $KB$GROUPS
  if pos < vend then return nil end
  parts[np + 1] = PAD[$K]
  return tconcat(parts, '', 1, np + 1)
end
"""
_CARD_HEAD = """
  if not value or sunpack('<i8', ENT, epos) >= sunpack('<i8', value, 1) then
    head = ssub(ENT, epos, epos + 15)
  end
  epos = epos + 16"""
_GROUP = """
  if m$G > 0 or pos < vend then
    np, pos = RUN[$K](value, pos, vend, $G, cut[$G], epos, m$G, np)
    if not np then return nil end
    epos = epos + m$G * $ES
  end"""


# Header cache: per counter count and tile group, tile start -> the pad of a record with that
# many counters and the header of a record of that group and start.
_HELPERS = """local HDR = {}
for k in pairs(PAD) do
  HDR[k] = {}
  for g = 0, NG - 1 do HDR[k][g] = {} end
end
local function header(H, k, g, s)
  local h = PAD[k] .. spack('<i8i8', g, s)
  H[s] = h
  return h
end
"""


def _lua_merges() -> str:
    """The Lua of every family's merge, with its counters unrolled (no table per record)."""

    def fill(template: str, k: int, **more: str) -> str:
        names = {p: [f"{p.lower()}{j}" for j in range(1, k + 1)] for p in ("C", "I", "L")}
        return Template(template).substitute(
            K=k, ES=8 * (1 + k), KB=8 * k, D="d" * k, Z=", ".join(["0"] * k),
            CI=", ".join(f"{a} + {b}" for a, b in zip(names["C"], names["I"], strict=True)),
            LI=", ".join(f"{a} + {b}" for a, b in zip(names["L"], names["I"], strict=True)),
            **{p: ", ".join(v) for p, v in names.items()}, **more,
        )  # fmt: skip

    runs = [fill(_RUN, k) for k in sorted(set(_K.tolist()))]
    groups = [  # only the family's own: a record of another group is damage
        "".join(Template(_GROUP).safe_substitute(G=g) for g, _, _ in spans) for spans in _SPANS
    ]
    merges = [
        fill(_MERGE, int(_K[f]), F=str(f + 1), M=_MS,
             MZ=" and ".join(f"m{g} == 0" for g in range(len(TILES))),
             CARD=_CARD_HEAD if f == _CARD else "", GROUPS=fill(groups[f], int(_K[f])))
        for f in range(len(FAMILIES))
    ]  # fmt: skip
    spans = ",".join("{" + ",".join(f"{{{g},{t},{s}}}" for g, t, s in sp) + "}" for sp in _SPANS)
    pads = ",".join(
        f"[{k}] = string.rep('\\0', {8 * (WIDTH - k)})" for k in sorted(set(_K.tolist()))
    )
    return (
        f"local SPANS = {{{spans}}}\nlocal PAD = {{{pads}}}\n"
        f"local FINITE = {{{','.join(f'{{{t},{s}}}' for t, s in FINITE)}}}\n"
        + _HELPERS
        + "".join(runs)
        + "".join(merges)
    )


# KEYS[1] = pointer. ARGV[1] = prefix; ARGV[2] = definitions hash; ARGV[3] = marker TTL (s);
# ARGV[4], ARGV[5] = attempt ids concatenated, their byte lengths comma-separated; ARGV[6] =
# per attempt its event time as int64 microseconds and seconds (floor); ARGV[7] = the statuses
# expected (a/d/l per attempt); ARGV[8] = the keys the expected applied attempts touch
# (version-relative), concatenated; ARGV[9] = one byte per key, its family's position;
# ARGV[10] = one INDEX per key; ARGV[11] = per key its increments (8-byte slots): for a card
# the head of its last outcome (int64 time, 8-byte code), the lifetime sums, then per tile
# group its batch tiles in start order: start, suffix sums. Reply: {'ok', version, applied,
# duplicates, late, one byte per attempt}; {'again', version, statuses} when those are not the
# expected ones (nothing is written); {'no_version'}; {'definitions', version}.
APPLY_SCRIPT = (
    f"local W, NG, REC = {WIDTH}, {len(TILES)}, {RECORD.itemsize}\n"
    # library functions as locals: a global lookup per call is a measurable share of the work
    + "local sunpack, spack, ssub = struct.unpack, struct.pack, string.sub\n"
    + "local tconcat, rcall = table.concat, redis.call\n"
    + f"local IXF, IXS = '<I4I2{'I2' * len(TILES)}', {INDEX.itemsize}\n"
    + """local ENT, parts, CUT, RUN, MERGE = ARGV[11], {}, {}, {}, {}
local NO_HEAD = spack('<i8', -9223372036854775808) .. string.rep('\\0', 8)
local function split(joined, sizes)
  local out, at = {}, 1
  for size in string.gmatch(sizes, '%d+') do
    out[#out + 1] = ssub(joined, at, at + size - 1)
    at = at + size
  end
  return out
end
"""
    + _lua_merges()
    + """
local version = rcall('GET', KEYS[1])
if not version then return {'no_version'} end
local base = ARGV[1] .. ':' .. version .. ':'
local meta = rcall('HMGET', base .. 'meta', 'defs', 'end_us', 'live_us')
if meta[1] ~= ARGV[2] then return {'definitions', version} end
local ids, secs, status, seen = split(ARGV[4], ARGV[5]), {}, {}, {}
local ref = math.max(tonumber(meta[2]) or 0, tonumber(meta[3]) or 0)
for i = 1, #ids do
  local us, sec = sunpack('<i8i8', ARGV[6], 16 * i - 15)
  secs[i] = sec
  if seen[ids[i]] or rcall('EXISTS', base .. 'seen:' .. ids[i]) == 1 then
    status[i] = 'd'
  else
    seen[ids[i]], status[i] = true, 'a'
    if us > ref then ref = us end
  end
end
local ref_s = math.floor(ref / 1000000)
local late_cut, applied = math.huge, 0
for _, w in ipairs(FINITE) do late_cut = math.min(late_cut, ref_s - ref_s % w[1] - w[2]) end
for i = 1, #ids do
  if status[i] == 'a' then
    if secs[i] < late_cut then status[i] = 'l' else applied = applied + 1 end
  end
end
local statuses = tconcat(status)
if statuses ~= ARGV[7] then return {'again', version, statuses} end
for f, spans in ipairs(SPANS) do
  local cut = {}
  for g = 0, NG - 1 do cut[g] = -math.huge end
  for _, sp in ipairs(spans) do cut[sp[1]] = ref_s - ref_s % sp[2] - sp[3] end
  CUT[f] = cut
end
local RK, KF, IDX, at = ARGV[8], ARGV[9], ARGV[10], 1
local wkey, wval, wold = {}, {}, {}
for n = 1, #KF do
  local epos, size, """
    + _MS
    + """ = sunpack(IXF, IDX, (n - 1) * IXS + 1)
  local key = base .. ssub(RK, at, at + size - 1)
  local value = rcall('GET', key)
  local new = MERGE[string.byte(KF, n) + 1](value, epos, """
    + _MS
    + """)
  if not new then return redis.error_reply('stored value of ' .. key .. ' is damaged') end
  wkey[n], wval[n], wold[n], at = key, new, value, at + size
end
local created, pttl = 0, rcall('PTTL', KEYS[1])
for n = 1, #wkey do
  if wold[n] then
    rcall('SET', wkey[n], wval[n], 'KEEPTTL')
  else
    created = created + 1
    if pttl > 0 then
      rcall('SET', wkey[n], wval[n], 'PX', pttl)
    else
      rcall('SET', wkey[n], wval[n])
    end
  end
end
local dups, late = 0, 0
for i = 1, #ids do
  if status[i] == 'a' then
    rcall('SET', base .. 'seen:' .. ids[i], '', 'EX', ARGV[3])
  elseif status[i] == 'd' then dups = dups + 1 else late = late + 1 end
end
if applied > 0 then
  rcall('HSET', base .. 'meta', 'live_us', string.format('%d', ref))
  rcall('HINCRBY', base .. 'meta', 'gen', 1)
  rcall('HINCRBY', base .. 'meta', 'keys', created)
end
return {'ok', version, applied, dups, late, statuses}
"""
)
SHA = hashlib.sha1(APPLY_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis names scripts so


@dataclass(frozen=True)
class ApplyResult:
    """What one batch of outcomes did.

    Attributes:
        applied: outcomes counted now.
        duplicates: outcomes whose ``attempt_id`` this version had counted (or that repeat an
            earlier one of the batch): ignored.
        late: outcomes older than every tile still kept: ignored.
        version: the version written to ("" when the batch was empty).
        statuses: per outcome, in order: ``a`` applied, ``d`` duplicate, ``l`` late.
    """

    applied: int
    duplicates: int
    late: int
    version: str
    statuses: str


def validate_outcomes(
    rows: Sequence[Mapping[str, Any]], where: str = "outcomes", now: datetime | None = None
) -> AttemptColumns:
    """Labelled attempts (contract rows) checked by the contract's one validator, and none
    later than :data:`MAX_AHEAD` after ``now`` (default: the wall clock).

    An outcome from the future would move the store's reference time ahead and age out every
    tile a correct outcome still needs: refused, not applied.

    Raises:
        ContractError: naming ``where[i].field`` of the first bad outcome and how many are bad.
    """
    columns = {name: [r.get(name, MISSING) for r in rows] for name in _REQUEST_FIELDS}
    attempts = validate_request(columns, where=where, row=rows.__getitem__)
    decoded = {name: Decoded(values) for name, values in attempts.columns.items()}
    decoded["approved"] = _decode_bools([r.get("approved", MISSING) for r in rows])
    decoded["response_code"] = _decode_codes([r.get("response_code", MISSING) for r in rows])
    for column, problem, bad in check(decoded, LABELLED):
        if bad is not None and bad.any():
            first = int(np.argmax(bad))
            raise ContractError(f"{where}[{first}].{column}", problem, int(bad.sum()))
    limit = np.datetime64((now or datetime.now(UTC)).replace(tzinfo=None) + MAX_AHEAD, "us")
    ahead = decoded["event_time"].values > limit
    if ahead.any():
        first = int(np.argmax(ahead))
        problem = f"more than {MAX_AHEAD} after the service's clock (clock skew?)"
        raise ContractError(f"{where}[{first}].event_time", problem, int(ahead.sum()))
    return AttemptColumns({name: d.values for name, d in decoded.items()})


MAX_AHEAD = timedelta(minutes=5)  # clock skew allowed between a producer and the service


_REQUEST_FIELDS = tuple(c.name for c in COLUMNS if c.need != "label")


def _decode_bools(values: list[Any]) -> Decoded:
    """``approved`` as pydantic's lax bool reads it (JSON and protobuf carry a bool)."""
    out, unreadable = np.zeros(len(values), bool), np.zeros(len(values), bool)
    for i, value in enumerate(values):
        try:
            out[i] = value if type(value) is bool else _BOOL.validate_python(value)
        except ValidationError:
            unreadable[i] = True
    return Decoded(out, unreadable)


_BOOL: TypeAdapter[bool] = TypeAdapter(bool)


def _decode_codes(values: list[Any]) -> Decoded:
    """``response_code`` as text, stripped (anything else is missing)."""
    unreadable = np.array([type(v) is not str for v in values], dtype=bool)
    texts = np.empty(len(values), dtype=object)
    texts[:] = [v.strip() if type(v) is str else "" for v in values]
    return Decoded(texts, unreadable)


def outcome_counters(columns: AttemptColumns) -> np.ndarray:
    """Each outcome's contribution to every counter (attempt x counter, COUNTERS order).

    The Python twin of the SQL expressions in :data:`COUNTERS`; the parity tests hold them
    equal.

    Raises:
        KeyError: a counter of :data:`COUNTERS` has no twin here.
    """
    c = columns.columns
    approved = c["approved"].astype(bool)
    code = c["response_code"].tolist()
    slog = np.array([math.log(1 + a) for a in c["amount"].tolist()], dtype=np.float64)
    hard, outage = codes.hard_codes(), codes.rules().outage_codes
    nsf = np.array([v == "51" for v in code], dtype=bool)
    twins = {
        "n": np.ones(len(code)),
        "a": approved.astype(float),
        "hard": np.array([v in hard for v in code], dtype=float),
        "outage": np.array([v in outage for v in code], dtype=float),
        "nsf": nsf.astype(float),
        "slog": slog,
        "aslog": np.where(approved, slog, 0.0),
        "nsfslog": np.where(nsf, slog, 0.0),
    }
    return np.stack([twins[name] for name in COUNTERS], axis=1)


def script_args(
    columns: AttemptColumns, prefix: str, marker_ttl: timedelta, statuses: str | None = None
) -> list[bytes | str]:
    """The arguments of :data:`APPLY_SCRIPT` for validated outcomes.

    Args:
        columns: the outcomes (:func:`validate_outcomes`).
        prefix: the store's key prefix.
        marker_ttl: how long an ``attempt_id`` is remembered.
        statuses: the statuses the script is to find (an ``again`` reply's); by default every
            outcome is new but for repeats of an earlier one in the batch.
    """
    c = columns.columns
    t_us = c["event_time"].astype("datetime64[us]").astype(np.int64)
    ids = columns.attempt_ids
    expect = statuses if statuses is not None else _first_seen(ids)
    take = np.frombuffer(expect.encode("ascii"), "S1") == b"a"
    keys, families, index, entries = _increments(plan_columns(c, t_us), columns, t_us, take)
    times = np.stack([t_us, t_us // US], axis=1).astype("<i8").tobytes()
    return [
        prefix, definitions_hash(), str(int(marker_ttl.total_seconds())), *_joined(ids),
        times, expect, keys, families, index, entries,
    ]  # fmt: skip


def _joined(texts: list[str]) -> tuple[bytes, str]:
    """Texts as the script splits them: UTF-8 concatenated, and the byte lengths."""
    joined = "".join(texts)
    if joined.isascii():
        return joined.encode("ascii"), ",".join(map(str, map(len, texts)))
    encoded = [t.encode() for t in texts]
    return b"".join(encoded), ",".join(map(str, map(len, encoded)))


def _first_seen(ids: list[str]) -> str:
    """``a`` for each id's first appearance, ``d`` for its repeats."""
    if len(set(ids)) == len(ids):
        return "a" * len(ids)
    seen: set[str] = set()
    out = []
    for i in ids:
        out.append("d" if i in seen else "a")
        seen.add(i)
    return "".join(out)


def _increments(
    p: Plan, columns: AttemptColumns, t_us: np.ndarray, take: np.ndarray
) -> tuple[bytes, bytes, bytes, bytes]:
    """What the outcomes taken add to each key they touch (ARGV[8] to ARGV[11]).

    Tiles already too old for the newest outcome taken are left out (the script's reference
    time is at least that, so it would drop them).
    """
    counters = outcome_counters(columns)[take]
    used = np.zeros(len(p.relkeys), bool)
    used[p.index[:, take]] = True
    kept = np.flatnonzero(used)
    rows = (np.cumsum(used) - 1)[p.index[:, take]]  # family x outcome -> key position
    fam, cols = p.families[kept], np.arange(WIDTH)
    k, n = _K[fam], len(kept)
    # family x outcome x counter, each family's counters first (as stored), zeros after them
    values = np.hstack([counters, np.zeros((len(counters), 1))])[:, _GATHER].transpose(1, 0, 2)
    flat = values.reshape(-1, WIDTH)
    life = np.zeros((n, WIDTH))
    for j in range(int(k.max(initial=0))):
        life[:, j] = np.bincount(rows.ravel(), flat[:, j], minlength=n)
    run, start, sums = _tile_sums(rows, t_us[take] // US, values)
    counts = np.bincount(run, minlength=n * len(TILES)).reshape(n, len(TILES))
    used_slots = _HEAD[fam] + k + counts.sum(axis=1) * (1 + k)
    at = np.cumsum(used_slots) - used_slots
    slots = np.zeros(int(used_slots.sum()))
    mine = cols < k[:, None]
    slots[((at + _HEAD[fam])[:, None] + cols)[mine]] = life[mine]
    key, group = run // len(TILES), run % len(TILES)
    rank = np.arange(len(run)) - np.searchsorted(run, run)
    earlier = (np.cumsum(counts, axis=1) - counts)[key, group]  # tiles of earlier groups
    base = at[key] + _HEAD[fam[key]] + k[key] + (earlier + rank) * (1 + k[key])
    slots[base] = start
    mine = cols < k[key][:, None]
    slots[(base[:, None] + 1 + cols)[mine]] = sums[mine]
    _card_heads(slots, at, rows[_CARD], t_us[take], columns, take)
    names = p.relkeys if n == len(p.relkeys) else [p.relkeys[i] for i in kept.tolist()]
    joined = "".join(names)
    if joined.isascii():
        keys, sizes = joined.encode("ascii"), list(map(len, names))
    else:
        encoded = [name.encode() for name in names]
        keys, sizes = b"".join(encoded), list(map(len, encoded))
    index = np.zeros(n, INDEX)
    index["at"], index["size"], index["m"] = 8 * at + 1, sizes, counts
    return keys, fam.astype(np.uint8).tobytes(), index.tobytes(), slots.tobytes()


def _tile_sums(
    rows: np.ndarray, sec: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per key, tile group and tile start the batch touches (sorted so): the sums of the
    values of that tile and every later one of its key and group.

    Args:
        rows: family x outcome -> key position.
        sec: each outcome's time (epoch seconds).
        values: family x outcome x counter.

    Returns:
        ``key * len(TILES) + group``, tile start, and the suffix sums of each.
    """
    starts = sec[None, :] - sec[None, :] % _P_TILE[:, None]  # family tile group x outcome
    ref_s = int(sec.max()) if len(sec) else 0
    keep = starts >= (ref_s - ref_s % _P_TILE - _P_SPAN)[:, None]
    run = (rows[_P_FAM] * len(TILES) + _P_GROUP[:, None])[keep]
    start = starts[keep]
    order = np.lexsort((start, run))
    run, start = run[order], start[order]
    at = (_P_FAM[:, None] * len(sec) + np.arange(len(sec)))[keep][order]
    new = np.ones(len(run), bool)
    new[1:] = (run[1:] != run[:-1]) | (start[1:] != start[:-1])
    first = np.flatnonzero(new)
    values = values.reshape(-1, WIDTH)[at]
    sums = np.add.reduceat(values, first, axis=0) if len(first) else values
    run, start = run[first], start[first]
    step = 1
    while step < len(run):  # suffix sums within each run, doubling the span each pass
        same = run[:-step] == run[step:]
        if not same.any():
            break
        wider = sums.copy()
        wider[:-step][same] += sums[step:][same]
        sums, step = wider, 2 * step
    return run, start, sums


def _card_heads(
    slots: np.ndarray, at: np.ndarray, card: np.ndarray, t_us: np.ndarray,
    columns: AttemptColumns, take: np.ndarray,
) -> None:  # fmt: skip
    """Each card key's last outcome (latest time, then attempt number, then position) as a
    head record (time, code) at the start of its increments."""
    if not len(card):
        return
    number = columns.columns["attempt_number"][take]
    order = np.lexsort((np.arange(len(card)), number, t_us, card))
    ordered = card[order]
    last = order[np.append(ordered[1:] != ordered[:-1], True)]
    codes = np.array(columns.columns["response_code"][take][last].tolist(), dtype="S8")
    slots.view(np.int64)[at[card[last]]] = t_us[last]
    slots.view("S8")[at[card[last]] + 1] = codes


def report_rows(reports: Sequence[Any]) -> list[Mapping[str, Any]]:
    """Reports in the API's shape (``{"attempt": {...}, "approved", "response_code",
    "merchant_advice_code"}``, as JSON decodes them) as flat contract rows.

    Raises:
        ContractError: naming ``outcomes[i]`` or ``outcomes[i].<field>`` of a report that is
            not an object, lacks its attempt, or has an unknown field or a bad
            ``merchant_advice_code``.
    """
    rows: list[Mapping[str, Any]] = []
    for i, report in enumerate(reports):
        if not isinstance(report, Mapping):
            raise ContractError(f"outcomes[{i}]", "must be an object")
        unknown = sorted(set(report) - _REPORT_FIELDS, key=str)
        if unknown:
            raise ContractError(f"outcomes[{i}].{unknown[0]}", "unknown field")
        attempt = report.get("attempt")
        if not isinstance(attempt, Mapping):
            raise ContractError(f"outcomes[{i}].attempt", "must be an object (the scored attempt)")
        mac = report.get("merchant_advice_code")
        if mac is not None and not (type(mac) is str and _MAC.fullmatch(mac)):
            raise ContractError(f"outcomes[{i}].merchant_advice_code", "must be 2 digits")
        row = dict(attempt)
        row["approved"] = report.get("approved", MISSING)
        row["response_code"] = report.get("response_code", MISSING)
        rows.append(row)
    return rows


_REPORT_FIELDS = {"attempt", "approved", "response_code", "merchant_advice_code"}
_MAC = re.compile(r"[0-9]{2}")


def validate_reports(reports: Sequence[Any]) -> AttemptColumns:
    """Reports in the API's shape, validated as one table (see :func:`validate_outcomes`).

    Errors name the field as the request holds it: ``outcomes[3].attempt.card_bin``,
    ``outcomes[0].response_code``.

    Raises:
        ContractError: the first bad report's field, and how many reports are bad.
    """
    if len(reports) > MAX_BATCH:
        raise ContractError("outcomes", f"at most {MAX_BATCH} outcomes per request", len(reports))
    try:
        return validate_outcomes(report_rows(reports), "outcomes")
    except ContractError as exc:
        head, _, field = exc.column.partition("].")
        if field and field.split(".")[0] in _ATTEMPT_FIELDS:
            exc = ContractError(f"{head}].attempt.{field}", exc.problem, exc.count)
        raise exc from None


_ATTEMPT_FIELDS = set(_REQUEST_FIELDS)


@dataclass(frozen=True)
class Prepared:
    """A validated batch, ready for an ``EVALSHA`` of :data:`APPLY_SCRIPT`.

    The call expects every outcome to be new (but repeats within the batch); when the script
    finds duplicates or late ones it writes nothing and :meth:`again` makes the call that
    expects what it found.
    """

    size: int
    pointer: str
    args: list[bytes | str]
    columns: AttemptColumns | None = None
    prefix: str = ""
    marker_ttl: timedelta = MARKER_TTL

    def again(self, reply: Sequence[Any]) -> Prepared | None:
        """The next call of the batch after ``reply``, or None: ``reply`` is the result."""
        if reply[0] != b"again" or b"a" not in reply[2] or self.columns is None:
            return None
        return prepare(self.columns, self.prefix, self.marker_ttl, reply[2].decode())


def prepare(
    columns: AttemptColumns,
    prefix: str,
    marker_ttl: timedelta = MARKER_TTL,
    statuses: str | None = None,
) -> Prepared:
    """The script call for validated outcomes (``columns`` from :func:`validate_outcomes`).

    Args:
        columns: the outcomes.
        prefix: the store's key prefix.
        marker_ttl: how long an ``attempt_id`` is remembered.
        statuses: what the script is to find per outcome (see :func:`script_args`).

    Raises:
        ContractError: more than :data:`MAX_BATCH` outcomes.
        ValueError: ``marker_ttl`` under the longest window.
    """
    if len(columns) > MAX_BATCH:
        raise ContractError("outcomes", f"at most {MAX_BATCH} outcomes per batch", len(columns))
    if marker_ttl.total_seconds() < max(s for _, s in FINITE):
        raise ValueError(f"marker_ttl {marker_ttl} is shorter than the longest window")
    args = script_args(columns, prefix, marker_ttl, statuses) if len(columns) else []
    return Prepared(len(columns), f"{prefix}:current", args, columns, prefix, marker_ttl)


def finish(reply: Sequence[Any], prefix: str) -> ApplyResult:
    """The script's final reply as a result (an ``again`` one only if nothing is new).

    Raises:
        UserError: there is no live version, or it has other feature definitions.
        ValueError: an ``again`` reply with new outcomes (:meth:`Prepared.again` makes the
            call that applies them).
    """
    kind = reply[0].decode()
    if kind == "no_version":
        raise UserError(f"no live feature version under {prefix!r}: run approvals materialize")
    if kind == "definitions":
        raise UserError(f"live version {reply[1].decode()} has other feature definitions")
    if kind == "again":  # nothing was written
        statuses = reply[2].decode()
        if "a" in statuses:
            raise ValueError("the script found other statuses than expected: call again")
        return ApplyResult(0, statuses.count("d"), statuses.count("l"), reply[1].decode(),
                           statuses)  # fmt: skip
    return ApplyResult(int(reply[2]), int(reply[3]), int(reply[4]), reply[1].decode(),
                       reply[5].decode())  # fmt: skip


def _changing() -> Exception:
    from redis.exceptions import WatchError

    return WatchError(f"outcomes turned duplicate or late on each of {_TRIES} tries: retry")


def apply_outcomes(
    target: redis.Redis | RedisSettings,
    outcomes: Sequence[Mapping[str, Any]],
    *,
    prefix: str | None = None,
    marker_ttl: timedelta = MARKER_TTL,
    where: str = "outcomes",
) -> ApplyResult:
    """Apply a batch of labelled attempts to the live online version, atomically, once each.

    Args:
        target: a Redis client (reuse it: one round trip per batch once the script is
            loaded, two when some outcomes turn out to be repeats or late) or settings (a
            client is opened and closed for this call).
        outcomes: up to :data:`MAX_BATCH` contract rows with ``approved`` and
            ``response_code``.
        prefix: the store's key prefix (required with a client; settings carry their own).
        marker_ttl: how long an ``attempt_id`` is remembered (at least the longest window).
        where: how errors name the outcomes (``outcomes[3].response_code``).

    Raises:
        ContractError: an outcome breaks the contract, or the batch is too large; nothing is
            applied.
        UserError: there is no live version, or it has other feature definitions.
        ValueError: a client without ``prefix``, or ``marker_ttl`` under the longest window.
        redis.RedisError: Redis failed (``WatchError``: concurrent writers kept turning
            outcomes duplicate on every try); nothing of the batch is applied.
    """
    if len(outcomes) > MAX_BATCH:
        raise ContractError(where, f"at most {MAX_BATCH} outcomes per batch", len(outcomes))
    from approvals.features.redis_settings import RedisSettings

    if isinstance(target, RedisSettings):
        prefix = target.prefix
    elif prefix is None:
        raise ValueError("pass the store's prefix with a Redis client")
    call = prepare(validate_outcomes(outcomes, where), prefix, marker_ttl)
    if not call.size:
        return ApplyResult(0, 0, 0, "", "")
    if not isinstance(target, RedisSettings):
        return finish(_apply(target, call), prefix)
    conn = client(target, target.timeout_ms / 1000)
    try:
        return finish(_apply(conn, call), prefix)
    finally:
        conn.close()


def _apply(conn: redis.Redis, call: Prepared) -> Any:
    """The final reply of the script for a batch (a second call if it had duplicates)."""
    for _ in range(_TRIES):
        reply = _evalsha(conn, call)
        again = call.again(reply)
        if again is None:
            return reply
        call = again
    raise _changing()


def _evalsha(conn: redis.Redis, call: Prepared) -> Any:
    from redis.exceptions import NoScriptError

    try:
        return conn.evalsha(SHA, 1, call.pointer, *call.args)
    except NoScriptError:
        conn.script_load(APPLY_SCRIPT)
        return conn.evalsha(SHA, 1, call.pointer, *call.args)


class OutcomeWriter:
    """Applies batches of outcomes from an asyncio program (the service, the stream consumer).

    One asyncio client of its own, made on first use on the running loop; every batch is one
    ``EVALSHA`` (two when some outcomes turn out to be repeats or late; the script is loaded
    once per Redis), bounded by ``timeout_s``.
    """

    def __init__(self, settings: RedisSettings, timeout_s: float = 5.0) -> None:
        self.settings, self.timeout_s = settings, timeout_s
        self._conn: redis.asyncio.Redis | None = None

    async def apply(self, columns: AttemptColumns) -> ApplyResult:
        """Apply validated outcomes (:func:`validate_outcomes` / :func:`validate_reports`).

        Raises:
            UserError: there is no live version, or it has other feature definitions.
            redis.RedisError, TimeoutError: Redis failed or was too slow; the batch is either
                applied whole or not at all (a retry counts the applied ones as duplicates).
        """
        call = prepare(columns, self.settings.prefix)
        if not call.size:
            return ApplyResult(0, 0, 0, "", "")
        async with asyncio.timeout(self.timeout_s):
            for _ in range(_TRIES):
                reply = await self._evalsha(call)
                again = call.again(reply)
                if again is None:
                    return finish(reply, self.settings.prefix)
                call = again
        raise _changing()

    async def _evalsha(self, call: Prepared) -> Any:
        from redis.exceptions import NoScriptError

        conn = self._client()
        try:
            return await conn.evalsha(SHA, 1, call.pointer, *call.args)
        except NoScriptError:
            await conn.script_load(APPLY_SCRIPT)
            return await conn.evalsha(SHA, 1, call.pointer, *call.args)

    def _client(self) -> redis.asyncio.Redis:
        if self._conn is None:
            import redis.asyncio

            options = {**self.settings.client_options(), "socket_timeout": self.timeout_s}
            options["socket_connect_timeout"] = max(
                self.timeout_s / 3, self.settings.connect_timeout_ms / 1000
            )
            self._conn = redis.asyncio.Redis.from_url(self.settings.url, **options)
        return self._conn

    async def aclose(self) -> None:
        """Close the client's connections."""
        if self._conn is not None:
            await self._conn.aclose()
            self._conn = None
