"""Build the approvals bento: service code, a registered model and serving-only dependencies.

First the model package is registered in BentoML's model store as ``approvals:<model_version>``
(``bentoml.models.create``; kept if that version is there already): the package without its
training-side feature state (Parquet, which the serving image cannot read), plus

- its trees compiled with lleaves for the baseline x86-64 CPU (``compiled/``, verified against
  the booster; the service checks them again and falls back to LightGBM if they do not fit);
- ``online/``: the Redis values of that feature state, exactly what ``approvals materialize``
  would write, packed for numpy (:mod:`approvals.features.packed`), which the deploy Job loads
  into Redis from the serving image (``python -m approvals.features.preload``).

``bentoml build`` only packs files under its build context, and the service needs the
``approvals`` library from outside ``bento/``. So the build context is assembled in a
temporary directory:

- ``bento/``'s service modules, generated stubs and ``bentofile.yaml``;
- ``serving.env``: ``APPROVALS_MODEL_TAG`` of the registered model, which the service then
  declares (``service.Approvals.model_ref``), so the bento's manifest names the model and
  BentoML ships it with the bento; with ``--challenger DIR`` also ``APPROVALS_CHALLENGER_TAG``
  of a second registered package (``challenger_ref``), which the pod's
  ``APPROVALS_EXPERIMENT`` then puts to work (``bento/arms.py``);
- ``wheels/approvals-*.whl``: the library, built with ``uv build``;
- ``requirements.txt``: the ``serve`` and ``sink`` extras pinned from ``uv.lock``
  (``uv export``; ``sink``: pyarrow and boto3 for ``python -m approvals.experiments.sink``), so
  no training, Pulumi or test package enters the image.

Usage: ``uv run --frozen --all-extras python bento/bundle.py MODEL_DIR [--challenger DIR]``
(``BENTOML_HOME`` chooses the store); prints the model tags on stderr and the bento tag on
stdout.
``bentoml containerize TAG`` then builds the image.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from config import BUILT_SETTINGS, MODEL_NAME

if TYPE_CHECKING:
    from approvals.model.package import ModelPackage

BENTO_DIR = Path(__file__).resolve().parent
ROOT = BENTO_DIR.parent
SERVICE_FILES = ("*.py", "bentofile.yaml")
# training-side state; trees are compiled and the online state packed afresh below
MODEL_SKIP = ("state", "compiled", "online")
# the build names its own models
MODEL_SETTINGS = (
    "APPROVALS_MODEL_DIR", "APPROVALS_MODEL_TAG", "APPROVALS_CHALLENGER_DIR",
    "APPROVALS_CHALLENGER_TAG",
)  # fmt: skip


def register(model_dir: Path) -> str:
    """Register the package ``model_dir`` in BentoML's model store; returns the model's tag.

    Raises:
        PackageError: ``model_dir`` is not a loadable model package.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    from approvals.features.packed import ONLINE_DIR
    from approvals.model.package import FORMAT_VERSION, ModelPackage

    package = ModelPackage.load(model_dir)
    version = package.model_version
    tag = f"{MODEL_NAME}:{version}"
    try:
        stored = bentoml.models.get(tag)
    except NotFound:
        pass
    else:
        if not (Path(stored.path) / ONLINE_DIR).is_dir():
            raise RuntimeError(
                f"model {tag} is in the store without its packed online state ({ONLINE_DIR}/): "
                f"delete it (bentoml models delete {tag}) and build again"
            )
        print(f"model {tag} is in the store already: kept", file=sys.stderr)
        return tag
    metadata = {"model_version": version, "format_version": FORMAT_VERSION}
    with bentoml.models.create(tag, labels={"project": "approvals"}, metadata=metadata) as model:
        target = Path(model.path)
        ignore = shutil.ignore_patterns(*MODEL_SKIP, ".*")
        shutil.copytree(model_dir, target, ignore=ignore, dirs_exist_ok=True)
        _compile_trees(target)
        _pack_online(package, target / ONLINE_DIR)
        ModelPackage.load(target)  # refuse to register something the service cannot load
    print(f"model {tag} registered", file=sys.stderr)
    return tag


def assemble(model_tag: str, context: Path, challenger_tag: str | None = None) -> Path:
    """Write the build context of the service serving ``model_tag`` (and, as its challenger,
    ``challenger_tag``) into ``context``."""
    for pattern in SERVICE_FILES:
        for path in BENTO_DIR.glob(pattern):
            shutil.copy2(path, context / path.name)
    shutil.copytree(BENTO_DIR / "approval", context / "approval")
    settings = f"APPROVALS_MODEL_TAG={model_tag}\n"
    if challenger_tag is not None:
        settings += f"APPROVALS_CHALLENGER_TAG={challenger_tag}\n"
    (context / BUILT_SETTINGS.name).write_text(settings)
    uv = _uv()
    _run([uv, "build", "--wheel", "--out-dir", str(context / "wheels"), str(ROOT)])
    export = [
        uv, "export", "--frozen", "--no-default-groups", "--extra", "serve", "--extra", "sink",
        "--no-hashes",
        "--no-emit-project", "--output-file", str(context / "requirements.txt"),
    ]  # fmt: skip
    _run(export)
    return context


def build(model_dir: Path, challenger_dir: Path | None = None) -> str:
    """Register the model (and the challenger) and build the bento into the BentoML store
    (``BENTOML_HOME``); returns the bento's tag.

    Raises:
        RuntimeError: a build step failed (with its error output), or the challenger is the
            champion's own version.
    """
    model_tag = register(model_dir.resolve())
    challenger_tag = register(challenger_dir.resolve()) if challenger_dir else None
    if challenger_tag == model_tag:
        raise RuntimeError(f"the challenger is the champion itself ({model_tag})")
    env = {k: v for k, v in os.environ.items() if k not in MODEL_SETTINGS}
    with tempfile.TemporaryDirectory(prefix="approvals-bento-") as tmp:
        context = assemble(model_tag, Path(tmp), challenger_tag)
        # bentoml refuses files outside its working directory: build from inside the context
        command = [sys.executable, "-m", "bentoml", "build", ".", "--output", "tag"]
        out = _run(command, context, env)
    tags = [line.split("__tag__:", 1)[1] for line in out.splitlines() if "__tag__:" in line]
    if not tags:
        raise RuntimeError(f"bentoml build printed no tag:\n{out[-2000:]}")
    return tags[-1].strip()


def _compile_trees(model: Path) -> None:
    """Compiled trees into the registered model; without them the service uses LightGBM."""
    from approvals.model.trees import compile_trees

    try:
        meta = compile_trees(model)
    except (ImportError, OSError, ValueError, RuntimeError) as exc:
        print(f"warning: trees not compiled ({exc}); LightGBM will score", file=sys.stderr)
    else:
        diff = meta["max_abs_diff"]
        print(f"compiled trees: largest difference to LightGBM {diff:.2g}", file=sys.stderr)


def _pack_online(package: ModelPackage, target: Path) -> None:
    """The Redis values of the package's feature state, packed for the preloader."""
    from approvals.features import packed
    from approvals.features.materialize import pack_state

    packed.save(pack_state(package.state()), target)
    size = sum(f.stat().st_size for f in target.iterdir())
    print(f"online state packed: {size / 1e6:.1f} MB in {target.name}/", file=sys.stderr)


def _uv() -> str:
    """The uv binary: the one running us (``UV``), on PATH, or the Makefile's ``.tools``."""
    for candidate in (os.environ.get("UV"), shutil.which("uv"), str(ROOT / ".tools/bin/uv")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise RuntimeError("uv not found (UV, PATH or .tools/bin/uv): run `make install` first")


def _run(args: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, check=False, capture_output=True, text=True)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def main() -> None:
    """Command line: build the bento for a model package and print its tag."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="model package directory (the champion)")
    parser.add_argument("--challenger", type=Path, help="a second package, the challenger")
    args = parser.parse_args()
    print(build(args.model_dir, args.challenger))


if __name__ == "__main__":
    main()
