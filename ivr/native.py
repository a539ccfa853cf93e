"""The call engine compiled with mypyc: the same source, less CPU per call (docs/benchmarks.md).

The modules that every command of every call runs through (the FastAGI layer and the menu
engine) are compiled to C extensions by mypyc (part of mypy) when `make setup` runs
``python -m ivr.native_build`` (ivr/native_build.py). The extensions go to ``build/native``
beside the package, never next to the sources, so an edited source can never be shadowed by an
old build: each build records the SHA-256 of every source of ivr/ and routing/ and of
pyproject.toml (the compiled modules check types declared elsewhere too, and mypy's settings
shape them), and the extensions load only while all of those are unchanged, for the same
Python. Otherwise, or with ``HOTLINE_INTERPRETED=1``, or where there is no C compiler, the
same modules run as ordinary Python.

The group is all-or-nothing: compiled modules call each other natively, so one stale source
turns the whole group off, as does a build whose shared library cannot be loaded.

This module is never compiled itself; :func:`install` runs from ``ivr/__init__.py`` before any
of the compiled modules can be imported.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import os
import platform
import sys
import sysconfig
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

COMPILED_MODULES = (
    "ivr.agi.protocol",
    "ivr.agi.connection",
    "ivr.agi.channel",
    "ivr.agi.server",
    "ivr.menu.engine",
)
GROUP_NAME = "hotline_engine"  # mypyc's shared library for the group: hotline_engine__mypyc
GROUP_LIBRARY = f"{GROUP_NAME}__mypyc"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the folder holding ivr/
DEFAULT_NATIVE_DIR = PACKAGE_ROOT / "build" / "native"
MANIFEST = "manifest.json"


def native_dir() -> Path:
    return Path(os.environ.get("HOTLINE_NATIVE_DIR") or DEFAULT_NATIVE_DIR).resolve()


def source_path(module: str) -> Path:
    return PACKAGE_ROOT.joinpath(*module.split(".")).with_suffix(".py")


def build_inputs() -> dict[str, str]:
    """SHA-256 of what a build is made from: every source of the two packages, and pyproject.toml."""
    paths = sorted([*(PACKAGE_ROOT / "ivr").rglob("*.py"), *(PACKAGE_ROOT / "routing").rglob("*.py")])
    if (PACKAGE_ROOT / "pyproject.toml").is_file():
        paths.append(PACKAGE_ROOT / "pyproject.toml")
    return {str(path.relative_to(PACKAGE_ROOT)): hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}


def platform_tag() -> dict[str, str]:
    """What an extension is built for: this Python (its ABI and version) on this machine."""
    return {"cache_tag": sys.implementation.cache_tag, "ext_suffix": str(sysconfig.get_config_var("EXT_SUFFIX")),
            "python": sys.version.split()[0], "machine": platform.machine()}


class NativeFinder:
    """Finds the compiled extension of each module in the group (and the group's shared library)."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def fresh_build(directory: Path) -> dict[str, Path] | str:
    """The extension files of an up-to-date build in ``directory``, or why there is none."""
    try:
        return _fresh_build(directory)
    except Exception as exc:  # a damaged build must never keep the hotline from starting
        return f"unusable build: {exc!r}"


def _fresh_build(directory: Path) -> dict[str, Path] | str:
    try:
        manifest: Any = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        return "not built"
    except (OSError, ValueError) as exc:
        return f"unreadable manifest: {exc}"
    if not isinstance(manifest, dict):
        return "unreadable manifest: not an object"
    built_for, running = manifest.get("platform"), platform_tag()
    if built_for != running:
        return f"built for {built_for}, running {running}"
    built_from, now = manifest.get("sources"), build_inputs()
    if built_from != now:
        before = built_from if isinstance(built_from, dict) else {}
        changed = sorted(path for path in set(now) | set(before) if before.get(path) != now.get(path))
        return f"{changed[0] if changed else 'the sources'} changed since the build"
    listed = manifest.get("files")
    if not isinstance(listed, dict) or set(listed) != {*COMPILED_MODULES, GROUP_LIBRARY}:
        return "built from another list of modules"
    files = {name: directory / relative for name, relative in listed.items()}
    if not all(file.is_file() for file in files.values()):
        return "extension files missing"
    return files


_status = "not checked"


def _wanted() -> bool:
    return os.environ.get("HOTLINE_INTERPRETED", "").strip().lower() in ("", "0", "no", "false")


def install() -> None:
    """Put the compiled group in front of the sources, if it is built, up to date and loads."""
    global _status
    if any(isinstance(finder, NativeFinder) for finder in sys.meta_path):
        return
    if not _wanted():
        _status = "interpreted (HOTLINE_INTERPRETED is set)"
        return
    if any(module in sys.modules for module in COMPILED_MODULES):
        _status = "interpreted (imported before the compiled build could be installed)"
        return
    found = fresh_build(native_dir())
    if isinstance(found, str):
        _status = f"interpreted ({found})"
        return
    finder = NativeFinder(found)
    sys.meta_path.insert(0, finder)
    try:
        importlib.import_module(GROUP_LIBRARY)  # the group's code: if it cannot load, none of it can
    except Exception as exc:
        sys.meta_path.remove(finder)
        sys.modules.pop(GROUP_LIBRARY, None)
        _status = f"interpreted (the build does not load: {exc})"
        return
    _status = "compiled (mypyc)"


def status() -> str:
    """How the engine runs: "compiled (mypyc)" or "interpreted (why)"."""
    return _status


def is_compiled(module: ModuleType) -> bool:
    return (module.__file__ or "").endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
