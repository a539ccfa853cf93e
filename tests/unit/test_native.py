"""The compiled call engine (ivr/native.py): used when built and up to date, never when stale."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ivr.agi.channel
import ivr.agi.protocol
import ivr.menu.engine
from ivr import native

WHERE = "import ivr.agi.channel as c, ivr.native as n; print(n.status()); print(c.__file__)"


def run_python(code: str, **environment: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HOTLINE_INTERPRETED", "HOTLINE_NATIVE_DIR")}
    result = subprocess.run([sys.executable, "-c", code], env={**env, **environment}, capture_output=True,
                            text=True, timeout=60, check=True, cwd=native.PACKAGE_ROOT)
    return result.stdout.splitlines()


@pytest.mark.skipif(bool(os.environ.get("HOTLINE_INTERPRETED")), reason="interpreted run asked for")
def test_the_tests_run_the_compiled_engine() -> None:
    # `make setup` builds it; a build that silently stopped loading would make every figure of the
    # benchmark, and what these tests exercise, something else than what is shipped.
    assert native.status() == "compiled (mypyc)", f"{native.status()}: `make setup` builds it"
    for module in (ivr.agi.channel, ivr.agi.protocol, ivr.menu.engine):
        assert native.is_compiled(module), module.__file__


def test_interpreted_on_request() -> None:
    status, where = run_python(WHERE, HOTLINE_INTERPRETED="1")
    assert status == "interpreted (HOTLINE_INTERPRETED is set)"
    assert where.endswith("ivr/agi/channel.py")
    if (native.native_dir() / native.MANIFEST).is_file():
        assert run_python(WHERE, HOTLINE_INTERPRETED="0")[0] == "compiled (mypyc)"


def copy_build(target: Path) -> Path:
    source = native.native_dir()
    if not (source / native.MANIFEST).is_file():
        pytest.skip("no compiled build here")
    shutil.copytree(source, target)
    return target


def rewrite_manifest(directory: Path, change) -> None:  # type: ignore[no-untyped-def]
    manifest = json.loads((directory / native.MANIFEST).read_text())
    change(manifest)
    (directory / native.MANIFEST).write_text(json.dumps(manifest))


def test_a_build_elsewhere_loads_from_there(tmp_path: Path) -> None:
    build = copy_build(tmp_path / "native")
    status, where = run_python(WHERE, HOTLINE_NATIVE_DIR=str(build))
    assert status == "compiled (mypyc)"
    assert where.startswith(str(build)) and not where.endswith(".py")


def test_an_edited_source_turns_the_whole_build_off(tmp_path: Path) -> None:
    build = copy_build(tmp_path / "native")
    rewrite_manifest(build, lambda m: m["sources"].update({"ivr/menu/engine.py": "0" * 64}))
    assert native.fresh_build(build) == "ivr/menu/engine.py changed since the build"
    status, where = run_python(WHERE, HOTLINE_NATIVE_DIR=str(build))
    assert status == "interpreted (ivr/menu/engine.py changed since the build)"
    assert where.endswith("ivr/agi/channel.py")  # not only engine.py: the group is all or nothing


def test_a_module_the_engine_only_imports_counts_too(tmp_path: Path) -> None:
    # The compiled engine checks types declared in modules outside the group (an adapter's
    # return type in ivr/selfservice.py); a new source file changes what a build would check.
    build = copy_build(tmp_path / "native")
    rewrite_manifest(build, lambda m: m["sources"].update({"ivr/selfservice.py": "0" * 64}))
    assert native.fresh_build(build) == "ivr/selfservice.py changed since the build"
    rewrite_manifest(build, lambda m: m["sources"].pop("ivr/selfservice.py"))
    assert native.fresh_build(build) == "ivr/selfservice.py changed since the build"


def test_a_build_that_does_not_load_is_not_used(tmp_path: Path) -> None:
    build = copy_build(tmp_path / "native")
    library = json.loads((build / native.MANIFEST).read_text())["files"][native.GROUP_LIBRARY]
    (build / library).write_bytes(b"not an ELF file")
    status, where = run_python(WHERE, HOTLINE_NATIVE_DIR=str(build))
    assert status.startswith("interpreted (the build does not load:")
    assert where.endswith("ivr/agi/channel.py")


def test_builds_that_do_not_fit_are_not_loaded(tmp_path: Path) -> None:
    assert native.fresh_build(tmp_path) == "not built"
    build = copy_build(tmp_path / "native")
    rewrite_manifest(build, lambda m: m["platform"].update(cache_tag="cpython-399"))
    assert str(native.fresh_build(build)).startswith("built for {'cache_tag': 'cpython-399'")
    build = copy_build(tmp_path / "other")
    rewrite_manifest(build, lambda m: m["files"].pop("ivr.agi.server"))
    assert native.fresh_build(build) == "built from another list of modules"
    build = copy_build(tmp_path / "gone")
    (build / json.loads((build / native.MANIFEST).read_text())["files"]["ivr.agi.channel"]).unlink()
    assert native.fresh_build(build) == "extension files missing"
    (build / native.MANIFEST).write_text("{not json")
    assert str(native.fresh_build(build)).startswith("unreadable manifest")
    (build / native.MANIFEST).write_text("[1, 2]")
    assert native.fresh_build(build) == "unreadable manifest: not an object"
