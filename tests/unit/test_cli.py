"""CLI commands that need only Redis: customers import/export, calls with no records."""

import os
import subprocess
import sys
from pathlib import Path

from ivr.services import LocalRedis

HOTLINE = [sys.executable, "-m", "ivr.cli"]


def run(redis_server: LocalRedis, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOTLINE_REDIS_URL": redis_server.url, "HOTLINE_STATE_DIR": str(tmp_path)}
    return subprocess.run([*HOTLINE, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_customers_import_reports_bad_rows_and_export_round_trips(redis_server: LocalRedis, tmp_path: Path) -> None:
    source = tmp_path / "customers.csv"
    source.write_text("\ufeffnumber,name,class,account,language,vip_since\n"
                      "13700000001,Li Si,key,K-9,zh,2019\n"
                      "13700000002,,gold,,,\n", encoding="utf-8")
    result = run(redis_server, tmp_path, "customers", "import", str(source))
    assert result.returncode == 1  # a row was skipped
    assert f"{source}:line 3: class must be key, business or public, not 'gold'" in result.stderr
    assert "imported 1 customer(s); 1 row(s) skipped" in result.stdout
    exported = run(redis_server, tmp_path, "customers", "export")
    assert exported.returncode == 0
    assert "13700000001,Li Si,key,K-9,zh,,2019" in exported.stdout.splitlines()


def test_check_of_the_bundled_rules_and_menu(redis_server: LocalRedis, tmp_path: Path) -> None:
    result = run(redis_server, tmp_path, "check", "ivr/samples/hotline-10000.yaml")
    assert result.returncode == 0, result.stderr
    assert "routing.yaml: ok (7 skills, 4 agents)" in result.stdout
