"""The call engine compiled with mypyc: the same source, about a quarter less CPU per call.

The modules that every command of every call runs through (the FastAGI layer and the menu
engine) are compiled to C extensions by mypyc (part of mypy) when `make setup` runs
``python -m ivr.native_build`` (ivr/native_build.py). The extensions go to ``build/native`` beside the package, never
next to the sources, so an edited source can never be shadowed by an old build: each build
records the SHA-256 of the sources it was made from, and the extensions load only while every
one of those sources is unchanged. Otherwise, or with ``HOTLINE_INTERPRETED=1``, or where there
is no C compiler, the same modules run as ordinary Python.

The group is all-or-nothing: compiled modules call each other natively, so one stale source
turns the whole group off.

This module is never compiled itself; :func:`install` runs from ``ivr/__init__.py`` before any
of the compiled modules can be imported.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

COMPILED_MODULES = (
    "ivr.agi.protocol",
    "ivr.agi.connection",
    "ivr.agi.channel",
    "ivr.agi.server",
    "ivr.menu.engine",
)
GROUP_NAME = "hotline_engine"  # mypyc's shared library for the group: hotline_engine__mypyc
PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the folder holding ivr/
DEFAULT_NATIVE_DIR = PACKAGE_ROOT / "build" / "native"
MANIFEST = "manifest.json"


def native_dir() -> Path:
    return Path(os.environ.get("HOTLINE_NATIVE_DIR") or DEFAULT_NATIVE_DIR)


def source_path(module: str) -> Path:
    return PACKAGE_ROOT.joinpath(*module.split(".")).with_suffix(".py")


def source_digest(module: str) -> str:
    return hashlib.sha256(source_path(module).read_bytes()).hexdigest()


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
        manifest = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        return "not built"
    except (OSError, ValueError) as exc:
        return f"unreadable manifest: {exc}"
    if manifest.get("cache_tag") != sys.implementation.cache_tag:
        return f"built for {manifest.get('cache_tag')}, running {sys.implementation.cache_tag}"
    digests = manifest.get("sources", {})
    if set(digests) != set(COMPILED_MODULES):
        return "built from another list of modules"
    for module in COMPILED_MODULES:
        if digests[module] != source_digest(module):
            return f"{source_path(module).name} changed since the build"
    files = {name: directory / relative for name, relative in manifest.get("files", {}).items()}
    if set(COMPILED_MODULES) - set(files) or not all(file.is_file() for file in files.values()):
        return "extension files missing"
    return files


_status = "not checked"


def install() -> None:
    """Put the compiled group in front of the sources, if it is built and up to date."""
    global _status
    if any(isinstance(finder, NativeFinder) for finder in sys.meta_path):
        return
    if os.environ.get("HOTLINE_INTERPRETED"):
        _status = "interpreted (HOTLINE_INTERPRETED is set)"
        return
    if any(module in sys.modules for module in COMPILED_MODULES):
        _status = "interpreted (imported before the compiled build could be installed)"
        return
    found = fresh_build(native_dir())
    if isinstance(found, str):
        _status = f"interpreted ({found})"
        return
    sys.meta_path.insert(0, NativeFinder(found))
    _status = "compiled (mypyc)"


def status() -> str:
    """How the engine runs: "compiled (mypyc)" or "interpreted (why)"."""
    return _status


def is_compiled(module: ModuleType) -> bool:
    return (module.__file__ or "").endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
