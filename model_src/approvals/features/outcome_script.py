"""The apply script of live outcomes and its arguments (see :mod:`approvals.features.outcomes`).

:data:`APPLY_SCRIPT` is generated from the feature definitions: per family, Lua with its
counters unrolled that merges a batch's increments into a stored value (head, lifetime sums,
suffix-summed tiles, :mod:`approvals.features.tiles`). :func:`script_args` computes those
increments in numpy: per key, the lifetime sums and, per tile group, every tile the batch
touches with the batch's sums from that tile on; for cards the last outcome.
"""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta
from string import Template

import numpy as np

from approvals import codes
from approvals.contract import AttemptColumns
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

__all__ = ["APPLY_SCRIPT", "FINITE", "SHA", "outcome_counters", "script_args"]

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
