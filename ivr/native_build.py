"""Build the compiled call engine (see ivr/native.py): ``python -m ivr.native_build [status]``.

A module of its own, not part of ivr.native: ``ivr/__init__.py`` imports that one at every start.
"""

from __future__ import annotations

import fcntl
import importlib.machinery
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ivr import native
from ivr.native import COMPILED_MODULES, GROUP_LIBRARY, GROUP_NAME, MANIFEST, PACKAGE_ROOT, fresh_build, source_path


def build(directory: Path) -> None:
    """Compile the group into a fresh folder beside ``directory``, then put it in its place."""
    import warnings

    from mypyc.build import mypycify
    from setuptools import setup  # type: ignore[import-untyped,unused-ignore]

    warnings.filterwarnings("ignore", module="setuptools")  # its beta notice about pyproject.toml

    sources = [str(source_path(module).relative_to(PACKAGE_ROOT)) for module in COMPILED_MODULES]
    inputs = native.build_inputs()  # before compiling: an edit meanwhile makes the build stale, not wrong
    staging = Path(tempfile.mkdtemp(prefix="native-", dir=directory.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="hotline-mypyc-") as work:
            cwd = os.getcwd()
            os.chdir(PACKAGE_ROOT)  # mypyc names modules by their path from here
            try:
                extensions = mypycify(sources, opt_level="3", group_name=GROUP_NAME,
                                      target_dir=str(Path(work) / "c"))
                setup(name="hotline-engine", ext_modules=extensions,
                      script_args=["-q", "build_ext", "--build-lib", str(staging), "--build-temp",
                                   str(Path(work) / "o")])
            finally:
                os.chdir(cwd)
        files: dict[str, str] = {}
        suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
        for name in (*COMPILED_MODULES, GROUP_LIBRARY):
            stem = staging.joinpath(*name.split("."))
            matches = [p for p in stem.parent.glob(stem.name + ".*") if p.name.endswith(suffixes)]
            if len(matches) != 1:
                raise SystemExit(f"mypyc built no extension for {name}")
            files[name] = str(matches[0].relative_to(staging))
        (staging / MANIFEST).write_text(json.dumps(
            {"platform": native.platform_tag(), "sources": inputs, "files": files}, indent=1))
        staging.chmod(0o755)  # mkdtemp's 0700 would hide it from a service user other than the builder
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # what is left of a failed build


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] in ([], ["build"]):
        directory = native.native_dir()
        directory.parent.mkdir(parents=True, exist_ok=True)
        # One build at a time: a second `make setup` waits, then finds the first one's build.
        with open(directory.parent / "native.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
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
