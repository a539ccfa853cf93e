"""Build the compiled call engine (see ivr/native.py): ``python -m ivr.native_build [status]``.

A module of its own, not part of ivr.native: ``ivr/__init__.py`` imports that one at every start.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ivr import native
from ivr.native import COMPILED_MODULES, GROUP_NAME, MANIFEST, PACKAGE_ROOT, fresh_build, source_digest, source_path


def build(directory: Path) -> None:
    """Compile the group into ``directory`` (a fresh one each time) and write its manifest."""
    import warnings

    from mypyc.build import mypycify
    from setuptools import setup  # type: ignore[import-untyped]

    warnings.filterwarnings("ignore", module="setuptools")  # its beta notice about pyproject.toml

    sources = [str(source_path(module).relative_to(PACKAGE_ROOT)) for module in COMPILED_MODULES]
    digests = {module: source_digest(module) for module in COMPILED_MODULES}
    staging = Path(tempfile.mkdtemp(prefix="native-", dir=directory.parent if directory.parent.exists() else None))
    with tempfile.TemporaryDirectory(prefix="hotline-mypyc-") as work:
        cwd = os.getcwd()
        os.chdir(PACKAGE_ROOT)  # mypyc names modules by their path from here
        try:
            extensions = mypycify(sources, opt_level="3", group_name=GROUP_NAME, target_dir=str(Path(work) / "c"))
            setup(name="hotline-engine", ext_modules=extensions,
                  script_args=["-q", "build_ext", "--build-lib", str(staging), "--build-temp", str(Path(work) / "o")])
        finally:
            os.chdir(cwd)
    files: dict[str, str] = {}
    for name in (*COMPILED_MODULES, f"{GROUP_NAME}__mypyc"):
        stem = staging.joinpath(*name.split("."))
        suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
        matches = [p for p in stem.parent.glob(stem.name + ".*") if p.name.endswith(suffixes)]
        if len(matches) != 1:
            raise SystemExit(f"mypyc built no extension for {name}")
        files[name] = str(matches[0].relative_to(staging))
    (staging / MANIFEST).write_text(json.dumps(
        {"cache_tag": sys.implementation.cache_tag, "sources": digests, "files": files}, indent=1))
    if directory.exists():
        shutil.rmtree(directory)
    staging.rename(directory)


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] in ([], ["build"]):
        directory = native.native_dir()
        directory.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(fresh_build(directory), dict):
            print(f"compiled engine up to date in {directory}")
            return
        build(directory)
        print(f"compiled engine built in {directory}")
    elif arguments[:1] == ["status"]:
        print(native.status())
    else:
        raise SystemExit("usage: python -m ivr.native_build [build|status]")


if __name__ == "__main__":
    main()
