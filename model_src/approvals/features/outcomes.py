"""Live outcomes: labelled attempts applied to the live online version, as materialize would.

:func:`apply_outcomes` validates a batch of labelled attempts (contract rows) and sends it in
one ``EVALSHA`` of :data:`APPLY_SCRIPT`, which resolves the live version (``{prefix}:current``)
itself and, for every attempt not seen before in that version (a marker per ``attempt_id``)
and not late, adds its counters to each family key it touches: the head record's lifetime sums,
the tile holding its event time and every earlier tile of that size (tiles hold suffix sums,
see :mod:`approvals.features.tiles`), and for cards the last outcome's time and code. Readers
then answer, for any request after every outcome applied, exactly what the offline SQL gives
on the history plus these outcomes (integer counters bit for bit; the ``*slog`` sums are added
in another order, so they agree to rounding).

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

Measured on the 2-core dev machine against redis-server 7.0 (docs/serving.md, "Live outcomes",
has the snippet): batches of 500 apply at about 3,000 outcomes/s (165 ms a batch, 11 ms of it
in Python; the script rewrites about 2,500 keys); MEMORY USAGE per key, mean: card 589 B,
bin_route 570 B, bin 1,009 B, lifetime-only families about 200 B; a dedup marker 120 B. At about
3 attempts per card a week that is about 1 GB per million cards (card keys and markers).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from approvals import codes
from approvals.contract import COLUMNS, MISSING, AttemptColumns, validate_request
from approvals.contract.table import Decoded, Rules, check
from approvals.errors import ContractError, UserError
from approvals.features.definitions import COUNTERS, FAMILIES
from approvals.features.tiles import RECORD, TILES, US, WIDTH, definitions_hash, plan_columns
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
# What the script reads per attempt: its time, floor seconds, attempt number, code, counters.
ATTEMPT = np.dtype([("us", "<i8"), ("sec", "<i8"), ("num", "<i8"), ("code", "S8"),
                    ("v", "<f8", (WIDTH,))])  # fmt: skip
FINITE = sorted({(w.tile, w.seconds) for f in FAMILIES for w in f.windows if not w.lifetime})


def _lua_families() -> str:
    """The families as a Lua table: counter positions (1-based, in COUNTERS order), tile
    groups (0-based, as stored) with tile size and longest window, card or not."""
    names = list(COUNTERS)
    rows = []
    for f in FAMILIES:
        counters = ",".join(str(names.index(c) + 1) for c in f.counters)
        spans: dict[int, int] = {}
        for w in f.windows:
            if not w.lifetime:
                spans[w.tile] = max(spans.get(w.tile, 0), w.seconds)
        groups = ",".join(f"{{{TILES.index(t)},{t},{s}}}" for t, s in sorted(spans.items()))
        rows.append(f"{{{{{counters}}},{{{groups}}},{'true' if f.name == 'card' else 'false'}}}")
    finite = ",".join(f"{{{t},{s}}}" for t, s in FINITE)
    return f"local FAMS = {{{','.join(rows)}}}\nlocal FINITE = {{{finite}}}\n"


# KEYS[1] = pointer. ARGV[1] = prefix; ARGV[2] = definitions hash; ARGV[3] = marker TTL (s);
# ARGV[4], ARGV[5] = attempt ids concatenated, their byte lengths comma-separated; ARGV[6],
# ARGV[7] = the batch's distinct version-relative keys, likewise; ARGV[8] = one byte per key,
# its family's position; ARGV[9] = one ATTEMPT record per attempt; ARGV[10] = uint32 per
# attempt and family: the position of its key. Reply: {'ok', version, applied, duplicates,
# late, one byte per attempt (a/d/l)}, or {'no_version'} / {'definitions', version}.
APPLY_SCRIPT = (
    _lua_families()
    + f"local W, NG, REC, NF = {WIDTH}, {len(TILES)}, {RECORD.itemsize}, {len(FAMILIES)}\n"
    + "local VF = '<' .. string.rep('d', W)\nlocal RF = '<i8i8' .. string.rep('d', W)\n"
    + "local AF = '<i8i8i8c8' .. string.rep('d', W)\nlocal IF = '<' .. string.rep('I4', NF)\n"
    + """
local function split(joined, sizes)
  local out, at = {}, 1
  for size in string.gmatch(sizes, '%d+') do
    out[#out + 1] = string.sub(joined, at, at + size - 1)
    at = at + size
  end
  return out
end
local version = redis.call('GET', KEYS[1])
if not version then return {'no_version'} end
local base = ARGV[1] .. ':' .. version .. ':'
local meta = redis.call('HMGET', base .. 'meta', 'defs', 'end_us', 'live_us')
if meta[1] ~= ARGV[2] then return {'definitions', version} end
local ids, relkeys, att = split(ARGV[4], ARGV[5]), split(ARGV[6], ARGV[7]), {}
local status, seen, ref = {}, {}, math.max(tonumber(meta[2]) or 0, tonumber(meta[3]) or 0)
for i = 1, #ids do
  local r = {struct.unpack(AF, ARGV[9], (i - 1) * (32 + 8 * W) + 1)}
  att[i] = {us = r[1], sec = r[2], num = r[3], code = r[4], v = {unpack(r, 5, 4 + W)},
            keys = {struct.unpack(IF, ARGV[10], (i - 1) * 4 * NF + 1)}}
  if seen[ids[i]] or redis.call('EXISTS', base .. 'seen:' .. ids[i]) == 1 then
    status[i] = 'd'
  else
    seen[ids[i]] = true
    status[i] = 'a'
    ref = math.max(ref, r[1])
  end
end
local ref_s = math.floor(ref / 1000000)
local late_cut = math.huge
for _, w in ipairs(FINITE) do late_cut = math.min(late_cut, ref_s - ref_s % w[1] - w[2]) end
local touching, applied, newest = {}, 0, nil
for i = 1, #ids do
  if status[i] == 'a' and att[i].sec < late_cut then status[i] = 'l' end
  if status[i] == 'a' then
    applied = applied + 1
    for f = 1, NF do
      local k = att[i].keys[f] + 1
      touching[k] = touching[k] or {}
      table.insert(touching[k], att[i])
    end
  end
end
local function parse(value)
  local life, tiles = {}, {}
  if not value then
    for j = 1, W do life[j] = 0 end
    return struct.pack('<i8', -9223372036854775808) .. string.rep('\\0', 8), life, tiles
  end
  if #value == 0 or #value % REC ~= 0 then return nil end
  life = {struct.unpack(VF, value, 17)}
  life[W + 1] = nil
  for pos = REC + 1, #value, REC do
    local r = {struct.unpack(RF, value, pos)}
    tiles[r[1]] = tiles[r[1]] or {}
    tiles[r[1]][r[2]] = {unpack(r, 3, 2 + W)}
  end
  return string.sub(value, 1, 16), life, tiles
end
local function merged(g, old, incs, cut)
  local starts = {}
  for s in pairs(old) do starts[#starts + 1] = s end
  for s in pairs(incs) do if not old[s] then starts[#starts + 1] = s end end
  table.sort(starts)
  local out, under, acc = {}, {}, {}
  for j = 1, W do under[j], acc[j] = 0, 0 end
  for n = #starts, 1, -1 do
    local s = starts[n]
    if s < cut then break end
    under = old[s] or under
    local inc = incs[s]
    if inc then for j = 1, #inc do acc[j] = acc[j] + inc[j] end end
    local v = {}
    for j = 1, W do v[j] = under[j] + acc[j] end
    out[#out + 1] = struct.pack(RF, g, s, unpack(v))
  end
  local rev = {}
  for n = #out, 1, -1 do rev[#rev + 1] = out[n] end
  return table.concat(rev)
end
local function rewrite(fam, value, list)
  local head, life, tiles = parse(value)
  if not head then return nil end
  local incs, cuts, best = {}, {}, nil
  for _, grp in ipairs(fam[2]) do
    incs[grp[1]], cuts[grp[1]] = {}, ref_s - ref_s % grp[2] - grp[3]
  end
  for _, a in ipairs(list) do
    for j, c in ipairs(fam[1]) do life[j] = life[j] + a.v[c] end
    for _, grp in ipairs(fam[2]) do
      local s = a.sec - a.sec % grp[2]
      if s >= cuts[grp[1]] then
        local inc = incs[grp[1]][s] or {}
        for j, c in ipairs(fam[1]) do inc[j] = (inc[j] or 0) + a.v[c] end
        incs[grp[1]][s] = inc
      end
    end
    if fam[3] and (not best or a.us > best.us or (a.us == best.us and a.num >= best.num)) then
      best = a
    end
  end
  if best and best.us >= struct.unpack('<i8', head) then
    head = struct.pack('<i8', best.us) .. best.code
  end
  local parts = {head .. struct.pack(VF, unpack(life))}
  for g = 0, NG - 1 do
    if tiles[g] or incs[g] then
      parts[#parts + 1] = merged(g, tiles[g] or {}, incs[g] or {}, cuts[g] or -math.huge)
    end
  end
  return table.concat(parts)
end
local writes, created = {}, 0
for k, list in pairs(touching) do
  local key = base .. relkeys[k]
  local value = redis.call('GET', key)
  local new = rewrite(FAMS[string.byte(ARGV[8], k) + 1], value, list)
  if not new then return redis.error_reply('stored value of ' .. relkeys[k] .. ' is damaged') end
  writes[#writes + 1] = {key, new, value ~= false}
end
local pttl = redis.call('PTTL', KEYS[1])
for _, w in ipairs(writes) do
  if w[3] then
    redis.call('SET', w[1], w[2], 'KEEPTTL')
  else
    created = created + 1
    if pttl > 0 then
      redis.call('SET', w[1], w[2], 'PX', pttl)
    else
      redis.call('SET', w[1], w[2])
    end
  end
end
local dups, late = 0, 0
for i = 1, #ids do
  if status[i] == 'a' then
    redis.call('SET', base .. 'seen:' .. ids[i], '', 'EX', ARGV[3])
  elseif status[i] == 'd' then dups = dups + 1 else late = late + 1 end
end
if applied > 0 then
  redis.call('HSET', base .. 'meta', 'live_us', string.format('%d', ref))
  redis.call('HINCRBY', base .. 'meta', 'gen', 1)
  redis.call('HINCRBY', base .. 'meta', 'keys', created)
end
return {'ok', version, applied, dups, late, table.concat(status)}
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


def validate_outcomes(rows: Sequence[Mapping[str, Any]], where: str = "outcomes") -> AttemptColumns:
    """Labelled attempts (contract rows) checked by the contract's one validator.

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
    return AttemptColumns({name: d.values for name, d in decoded.items()})


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


def script_args(columns: AttemptColumns, prefix: str, marker_ttl: timedelta) -> list[bytes | str]:
    """The arguments of :data:`APPLY_SCRIPT` for validated outcomes."""
    c = columns.columns
    t_us = c["event_time"].astype("datetime64[us]").astype(np.int64)
    p = plan_columns(c, t_us)
    records = np.zeros(len(t_us), ATTEMPT)
    records["us"], records["sec"], records["num"] = t_us, t_us // US, c["attempt_number"]
    records["code"] = [code.encode("ascii") for code in c["response_code"].tolist()]
    records["v"] = outcome_counters(columns)
    ids = [i.encode() for i in columns.attempt_ids]
    keys = [k.encode() for k in p.relkeys]
    return [
        prefix, definitions_hash(), str(int(marker_ttl.total_seconds())),
        b"".join(ids), ",".join(map(str, map(len, ids))),
        b"".join(keys), ",".join(map(str, map(len, keys))),
        bytes(p.families.tolist()), records.tobytes(), p.index.T.astype("<u4").tobytes(),
    ]  # fmt: skip


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
    """A validated batch, ready for one ``EVALSHA`` of :data:`APPLY_SCRIPT`."""

    size: int
    pointer: str
    args: list[bytes | str]


def prepare(columns: AttemptColumns, prefix: str, marker_ttl: timedelta = MARKER_TTL) -> Prepared:
    """The script call for validated outcomes (``columns`` from :func:`validate_outcomes`).

    Raises:
        ContractError: more than :data:`MAX_BATCH` outcomes.
        ValueError: ``marker_ttl`` under the longest window.
    """
    if len(columns) > MAX_BATCH:
        raise ContractError("outcomes", f"at most {MAX_BATCH} outcomes per batch", len(columns))
    if marker_ttl.total_seconds() < max(s for _, s in FINITE):
        raise ValueError(f"marker_ttl {marker_ttl} is shorter than the longest window")
    args = script_args(columns, prefix, marker_ttl) if len(columns) else []
    return Prepared(len(columns), f"{prefix}:current", args)


def finish(reply: Sequence[Any], prefix: str) -> ApplyResult:
    """The script's reply as a result.

    Raises:
        UserError: there is no live version, or it has other feature definitions.
    """
    kind = reply[0].decode()
    if kind == "no_version":
        raise UserError(f"no live feature version under {prefix!r}: run approvals materialize")
    if kind == "definitions":
        raise UserError(f"live version {reply[1].decode()} has other feature definitions")
    return ApplyResult(int(reply[2]), int(reply[3]), int(reply[4]), reply[1].decode(),
                       reply[5].decode())  # fmt: skip


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
            loaded) or settings (a client is opened and closed for this call).
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
        redis.RedisError: Redis failed; nothing of the batch is applied.
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
        return finish(_evalsha(target, call), prefix)
    conn = client(target, target.timeout_ms / 1000)
    try:
        return finish(_evalsha(conn, call), prefix)
    finally:
        conn.close()


def _evalsha(conn: redis.Redis, call: Prepared) -> Any:
    from redis.exceptions import NoScriptError

    try:
        return conn.evalsha(SHA, 1, call.pointer, *call.args)
    except NoScriptError:
        conn.script_load(APPLY_SCRIPT)
        return conn.evalsha(SHA, 1, call.pointer, *call.args)


class OutcomeWriter:
    """Applies batches of outcomes from an asyncio program (the service, the stream consumer).

    One asyncio client of its own, made on first use on the running loop; every call is one
    ``EVALSHA`` (the script is loaded once per Redis), bounded by ``timeout_s``.
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
        from redis.exceptions import NoScriptError

        conn = self._client()
        async with asyncio.timeout(self.timeout_s):
            try:
                reply = await conn.evalsha(SHA, 1, call.pointer, *call.args)
            except NoScriptError:
                await conn.script_load(APPLY_SCRIPT)
                reply = await conn.evalsha(SHA, 1, call.pointer, *call.args)
        return finish(reply, self.settings.prefix)

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
