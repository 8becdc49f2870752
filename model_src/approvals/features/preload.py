"""Load a model's pre-packed online features into Redis before its service takes traffic.

The program of the deployment's Job, run from the release's own serving image (numpy, redis,
pydantic and bentoml; no pandas, pyarrow or CLI libraries)::

    python -m approvals.features.preload --model-tag approvals:<version> [--ttl-days N]
    python -m approvals.features.preload --model DIR [--ttl-days N]

``--model-tag`` resolves the model in BentoML's model store where the image's service finds it
(the bento's own, ``$BENTO_PATH/models``, inside a bento's image; ``BENTOML_HOME``'s
elsewhere); ``--model`` names a registered model's or a package's directory holding the
packed state (``online/``, :mod:`approvals.features.packed`). Redis comes from the service's
own variables: ``APPROVALS_REDIS_URL``, ``APPROVALS_REDIS_PASSWORD`` (the AUTH token, never
shown), ``APPROVALS_REDIS_PREFIX`` and the rest of
:class:`~approvals.features.redis_settings.RedisSettings`.

When the live version already holds features of this code's definitions and layout whose state
ends at or after the model's, nothing is written: a rollback to an older model keeps the newer
features, and a re-run does nothing. Otherwise the packed values become a new version through
the writer of ``approvals materialize`` (:func:`approvals.features.versions.write_version`) and
readers switch to it. One progress line per family on stdout.

Exit codes, as the ``approvals`` command's: 0 written or nothing to do; 2 a mistake to fix
(unknown model tag, a model without packed online state, bad settings or arguments), one line
on stderr; 1 Redis unreachable, a write failed (the previous live version stays) or packed
files that fail their checksums.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

from approvals.errors import UserError
from approvals.features import packed
from approvals.features.live import features_status, read_live
from approvals.features.redis_settings import RedisSettings
from approvals.features.versions import (
    DEFAULT_TTL,
    WRITE_TIMEOUT_S,
    MaterializeResult,
    Progress,
    VersionContent,
    client,
    write_version,
)

OK, FAILED, USER_ERROR = 0, 1, 2  # approvals.cli.exits.ExitCode's meanings


def preload(
    content: VersionContent,
    settings: RedisSettings,
    *,
    ttl: timedelta = DEFAULT_TTL,
    progress: Progress | None = None,
) -> MaterializeResult | None:
    """Write ``content`` as the live version unless the live one holds its features already.

    Returns:
        What was written, or None when the live version was kept.

    Raises:
        redis.RedisError: Redis failed; the previous version stays live.
    """
    say = progress or (lambda _msg: None)
    conn = client(settings, WRITE_TIMEOUT_S)
    try:
        live = read_live(conn, settings.prefix)
    finally:
        conn.close()
    status = features_status(live, int(content.fields["end_us"]))
    if status.ready:
        say(f"nothing to do: {status.describe()}")
        return None
    say(f"writing a new version: {status.describe()}")
    # the live version is older or unusable: replacing it is the point, not a rollback
    return write_version(content, settings, ttl=ttl, progress=say, allow_older=True)


def model_dir(model: Path | None, tag: str | None) -> Path:
    """The directory of ``model``, or of ``tag`` in BentoML's model store.

    Raises:
        UserError: ``model`` is not a directory, or the tag is malformed or not in the store.
    """
    if model is not None:
        if not model.is_dir():
            raise UserError(f"--model {model}: no such directory")
        return model
    import bentoml
    from bentoml.exceptions import BentoMLException

    store = _bento_store()
    try:
        found = bentoml.models.get(str(tag)) if store is None else store.get(str(tag))
    except (BentoMLException, ValueError) as exc:  # NotFound, or a malformed tag
        raise UserError(f"model {tag}: {type(exc).__name__}: {exc}") from exc
    return Path(found.path)


def _bento_store() -> Any | None:
    """The model store of the bento this runs in, if any; else None (BentoML's own store).

    A bento's image holds its models in the bento (``$BENTO_PATH/models``, ``BENTO_PATH`` set by
    its Dockerfile), not in ``$BENTOML_HOME/models``; ``bentoml serve`` of the bento reads them
    there, through a ``ModelStore`` of that folder as this does.
    """
    bento = os.environ.get("BENTO_PATH")
    if not bento or not (Path(bento) / "models").is_dir():
        return None
    from bentoml._internal.models import ModelStore

    return ModelStore(str(Path(bento) / "models"))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the preloader; returns its exit code."""
    from pydantic import ValidationError

    args = _Parser().parse_args(argv)
    try:
        settings = RedisSettings()
        content = packed.load(model_dir(args.model, args.model_tag) / packed.ONLINE_DIR)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "APPROVALS_REDIS_" + "_".join(str(p) for p in first["loc"]).upper()
        return _fail(USER_ERROR, f"{where}: {first['msg']}")
    except (UserError, OSError) as exc:  # OSError: a missing or unreadable directory
        return _fail(USER_ERROR, str(exc))
    except packed.PackedDataError as exc:
        return _fail(FAILED, str(exc))
    return _write(content, settings, timedelta(days=args.ttl_days))


def _write(content: VersionContent, settings: RedisSettings, ttl: timedelta) -> int:
    from redis.exceptions import AuthenticationError, RedisError

    try:
        done = preload(content, settings, ttl=ttl, progress=_say)
    except AuthenticationError as exc:
        return _fail(USER_ERROR, f"Redis at {settings.url} refused the AUTH token: {exc}")
    except (RedisError, OSError) as exc:
        return _fail(FAILED, f"Redis at {settings.url}: {type(exc).__name__}: {_line(exc)}")
    if done is not None:
        _say(
            f"preloaded {done.keys:,} keys ({done.records:,} records) as "
            f"{settings.prefix}:{done.version} in {done.seconds:.1f}s; state ends "
            f"{done.end.isoformat()}; previous: {done.previous}"
        )
    return OK


def _say(message: str) -> None:
    print(message, flush=True)


def _fail(code: int, message: str) -> int:
    print(f"error: {_line(message)}", file=sys.stderr, flush=True)
    return code


def _line(text: object) -> str:
    return " ".join(str(text).split())


class _Parser(argparse.ArgumentParser):
    """The program's arguments; a usage mistake is one line on stderr and exit code 2."""

    def __init__(self) -> None:
        super().__init__(
            prog="python -m approvals.features.preload",
            description="Load a model's packed online features into Redis (the deploy Job).",
        )
        which = self.add_mutually_exclusive_group(required=True)
        which.add_argument(
            "--model-tag", metavar="TAG", help="approvals:<version> in BentoML's model store"
        )
        which.add_argument(
            "--model", metavar="DIR", type=Path, help="a model directory holding online/"
        )
        self.add_argument(
            "--ttl-days", metavar="N", type=_days, default=DEFAULT_TTL.days,
            help=f"lifetime of the keys in days (default {DEFAULT_TTL.days})",
        )  # fmt: skip

    def error(self, message: str) -> NoReturn:
        self.exit(USER_ERROR, f"error: {message}\n")


def _days(text: str) -> int:
    days = int(text)
    if not 1 <= days <= 365:
        raise argparse.ArgumentTypeError(f"must be 1 to 365, got {days}")
    return days


if __name__ == "__main__":
    sys.exit(main())
