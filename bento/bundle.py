"""Build the approvals bento: service code, a model package and serving-only dependencies.

``bentoml build`` only packs files under its build context, and the service needs two things
from outside ``bento/``: the ``approvals`` library (``model_src/``) and a trained model
package. So the build context is assembled in a temporary directory:

- ``bento/``'s service modules, generated stubs and ``bentofile.yaml``;
- ``model/``: the model package without its training-side feature state (the service reads
  online features from Redis), where :data:`config.BAKED_MODEL` finds it, plus its trees
  compiled with lleaves for the baseline x86-64 CPU (``model/compiled/``, verified against
  the booster; the service checks them again and falls back to LightGBM if they do not fit);
- ``wheels/approvals-*.whl``: the library, built with ``uv build``;
- ``requirements.txt``: the ``serve`` extra pinned from ``uv.lock`` (``uv export``), so no
  training, Pulumi or test package enters the image.

Usage: ``uv run --frozen --all-extras python bento/bundle.py MODEL_DIR`` (``BENTOML_HOME``
chooses the store); prints the bento tag. ``bentoml containerize TAG`` then builds the image.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BENTO_DIR = Path(__file__).resolve().parent
ROOT = BENTO_DIR.parent
SERVICE_FILES = ("*.py", "bentofile.yaml")
MODEL_SKIP = ("state", "compiled")  # training-side state; trees are compiled afresh below


def assemble(model_dir: Path, context: Path) -> Path:
    """Write the build context for ``model_dir`` into the empty directory ``context``."""
    for pattern in SERVICE_FILES:
        for path in BENTO_DIR.glob(pattern):
            shutil.copy2(path, context / path.name)
    shutil.copytree(BENTO_DIR / "approval", context / "approval")
    shutil.copytree(model_dir, context / "model", ignore=shutil.ignore_patterns(*MODEL_SKIP, ".*"))
    _compile_trees(context / "model")
    uv = _uv()
    _run([uv, "build", "--wheel", "--out-dir", str(context / "wheels"), str(ROOT)])
    export = [
        uv, "export", "--frozen", "--no-dev", "--extra", "serve", "--no-hashes",
        "--no-emit-project", "--output-file", str(context / "requirements.txt"),
    ]  # fmt: skip
    _run(export)
    return context


def build(model_dir: Path) -> str:
    """Build the bento into the BentoML store (``BENTOML_HOME``); returns its tag.

    Raises:
        RuntimeError: a build step failed (with its error output).
    """
    with tempfile.TemporaryDirectory(prefix="approvals-bento-") as tmp:
        context = assemble(model_dir.resolve(), Path(tmp))
        # bentoml refuses files outside its working directory: build from inside the context
        out = _run([sys.executable, "-m", "bentoml", "build", ".", "--output", "tag"], context)
    tags = [line.split("__tag__:", 1)[1] for line in out.splitlines() if "__tag__:" in line]
    if not tags:
        raise RuntimeError(f"bentoml build printed no tag:\n{out[-2000:]}")
    return tags[-1].strip()


def _compile_trees(model: Path) -> None:
    """Compiled trees into the bento's model; without them the service uses LightGBM."""
    from approvals.model.trees import compile_trees

    try:
        meta = compile_trees(model)
    except (ImportError, OSError, ValueError, RuntimeError) as exc:
        print(f"warning: trees not compiled ({exc}); LightGBM will score", file=sys.stderr)
    else:
        diff = meta["max_abs_diff"]
        print(f"compiled trees: largest difference to LightGBM {diff:.2g}", file=sys.stderr)


def _uv() -> str:
    """The uv binary: the one running us (``UV``), on PATH, or the Makefile's ``.tools``."""
    for candidate in (os.environ.get("UV"), shutil.which("uv"), str(ROOT / ".tools/bin/uv")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise RuntimeError("uv not found (UV, PATH or .tools/bin/uv): run `make install` first")


def _run(args: list[str], cwd: Path = ROOT) -> str:
    done = subprocess.run(args, cwd=cwd, check=False, capture_output=True, text=True)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def main() -> None:
    """Command line: build the bento for a model package and print its tag."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="model package directory")
    print(build(parser.parse_args().model_dir))


if __name__ == "__main__":
    main()
