"""A model's online state, pre-packed: the values ``materialize`` would write, numpy-readable.

``bento/bundle.py`` packs the package's feature state at registration (:func:`save` of
:func:`approvals.features.materialize.pack_state`) into ``online/`` of the registered model.
The serving image, which has no pandas or pyarrow to read the state's Parquet, loads it
(:func:`load`) and writes it through the same writer as ``approvals materialize``
(:mod:`approvals.features.preload`), so Redis holds the same bytes whichever path wrote them.

Files of ``online/``:

- ``keys.bin``: every version-relative key (``<family>:<key>``, UTF-8), concatenated, family by
  family;
- ``values.bin``: the stored value of each key (layout in :mod:`approvals.features.tiles`),
  concatenated in the same order;
- ``offsets.npy``: int64, (keys + 1) x 2: where each key (column 0) and value (column 1)
  starts, and the files' lengths last;
- ``meta.json``: the format, the version's meta fields, the families in order (name, keys,
  state rows, records) and SHA-256 checksums: of each other file, and of those fields and
  families (under ``meta.json``).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from approvals.atomic import staged_dir
from approvals.errors import PackageError
from approvals.features.tiles import LAYOUT, definitions_hash, epoch_us
from approvals.features.versions import FamilyBatch, VersionContent

ONLINE_DIR = "online"  # inside a model package or a registered model
FORMAT = 1
META, KEYS, VALUES, OFFSETS = "meta.json", "keys.bin", "values.bin", "offsets.npy"
FILES = (KEYS, VALUES, OFFSETS)


class PackedDataError(ValueError):
    """Packed files that fail verification (a checksum or their shape): damaged, not mistaken."""


def save(content: VersionContent, directory: Path) -> Path:
    """Write ``content`` as a packed online state into ``directory`` (replaced atomically).

    The families are consumed one at a time, so a lazily packed state never sits in memory
    whole.
    """
    families: list[dict[str, Any]] = []
    key_ends, value_ends = [np.zeros(1, np.int64)], [np.zeros(1, np.int64)]
    with staged_dir(directory) as tmp:
        with (tmp / KEYS).open("wb") as keys, (tmp / VALUES).open("wb") as values:
            for batch in content.families:
                encoded = [key.encode() for key in batch.keys]
                keys.write(b"".join(encoded))
                values.write(b"".join(batch.values))
                key_ends.append(_ends(encoded, key_ends[-1][-1]))
                value_ends.append(_ends(batch.values, value_ends[-1][-1]))
                families.append({"name": batch.name, "keys": len(encoded), "rows": batch.rows,
                                 "records": batch.records})  # fmt: skip
        offsets = np.stack([np.concatenate(key_ends), np.concatenate(value_ends)], axis=1)
        np.save(tmp / OFFSETS, offsets, allow_pickle=False)
        sums = {name: hashlib.sha256((tmp / name).read_bytes()).hexdigest() for name in FILES}
        sums[META] = _described(content.fields, families)
        meta = {"format": FORMAT, "fields": content.fields, "families": families, "sha256": sums}
        (tmp / META).write_text(json.dumps(meta, indent=1))  # fields in the order written
    return directory


def _ends(items: Sequence[bytes], start: int) -> np.ndarray:
    """Where each item ends when they follow one another from ``start``."""
    return start + np.cumsum(np.fromiter(map(len, items), np.int64, len(items)))


def load(directory: Path) -> VersionContent:
    """The packed online state in ``directory``, checked against its checksums.

    Raises:
        PackageError: there is no packed state, or it was packed for other feature
            definitions than this code reads.
        PackedDataError: a file does not match its checksum, or the offsets do not fit.
    """
    if not (directory / META).is_file():
        raise PackageError(
            f"no packed online state in {directory} ({META} missing): register the model "
            "with bento/bundle.py, which packs it"
        )
    meta = _meta(directory / META)
    fields = meta["fields"]
    if (fields.get("defs"), fields.get("layout")) != (definitions_hash(), str(LAYOUT)):
        raise PackageError(
            f"{directory}: packed with feature definitions {fields.get('defs')} "
            f"(layout {fields.get('layout')}); this code reads {definitions_hash()} "
            f"(layout {LAYOUT}): register the model again"
        )
    data = {name: _verified(directory / name, meta["sha256"][name]) for name in FILES}
    offsets = _offsets(data, sum(int(f["keys"]) for f in meta["families"]))
    return VersionContent(meta["end"], fields, _batches(meta["families"], data, offsets))


def _meta(path: Path) -> dict[str, Any]:
    """``meta.json``, its shape checked (a format this code reads, every part present).

    Raises:
        PackageError: another format.
        PackedDataError: not JSON, or a part missing or of the wrong type.
    """
    try:
        meta = json.loads(path.read_text())
        version = meta.get("format")
    except (ValueError, AttributeError) as exc:
        raise PackedDataError(f"{path} is damaged ({type(exc).__name__}: {exc})") from exc
    if version != FORMAT:
        raise PackageError(f"{path}: packed online state of format {version}, not {FORMAT}")
    try:
        fields = {str(k): str(v) for k, v in meta["fields"].items()}
        end = datetime.fromisoformat(fields["end"])
        if epoch_us(end) != int(fields["end_us"]):
            raise ValueError(f"end {fields['end']} is not end_us {fields['end_us']}")
        families = [
            {"name": str(f["name"]), "keys": int(f["keys"]), "rows": int(f["rows"]),
             "records": int(f["records"])}
            for f in meta["families"]
        ]  # fmt: skip
        sums = {name: str(meta["sha256"][name]) for name in FILES}
        if _described(fields, families) != meta["sha256"][META]:
            raise ValueError("its fields or families do not match their checksum")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PackedDataError(f"{path} is damaged ({type(exc).__name__}: {exc})") from exc
    return {"end": end, "fields": fields, "families": families, "sha256": sums}


def _described(fields: dict[str, str], families: list[dict[str, Any]]) -> str:
    """SHA-256 of what ``meta.json`` says about the version (its fields and families)."""
    text = json.dumps({"fields": fields, "families": families}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _verified(path: Path, sha256: str) -> bytes:
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise PackedDataError(f"{path} does not match its checksum in {META}")
    return data


def _offsets(data: dict[str, bytes], keys: int) -> np.ndarray:
    offsets = np.load(io.BytesIO(data[OFFSETS]), allow_pickle=False)
    ends = [len(data[KEYS]), len(data[VALUES])]
    if offsets.shape != (keys + 1, 2) or offsets[-1].tolist() != ends:
        raise PackedDataError(f"{OFFSETS} does not describe {keys} keys and values")
    if np.any(np.diff(offsets, axis=0) < 0) or np.any(offsets[0] != 0):
        raise PackedDataError(f"{OFFSETS} is not ascending from 0")
    return offsets


def _batches(
    families: list[dict[str, Any]], data: dict[str, bytes], offsets: np.ndarray
) -> Iterator[FamilyBatch]:
    keys, values, start = data[KEYS], data[VALUES], 0
    for family in families:
        stop = start + int(family["keys"])
        k, v = (offsets[start : stop + 1, column].tolist() for column in (0, 1))
        names = [keys[a:b].decode() for a, b in pairwise(k)]
        stored = [values[a:b] for a, b in pairwise(v)]
        rows, records = int(family["rows"]), int(family["records"])
        yield FamilyBatch(family["name"], names, stored, rows, records)
        start = stop
