"""Runs last in the end-to-end session (files run in name order): Asterisk's own CDRs of every call
the session placed (self-service, queues, abandons, fallbacks, controller faults, callbacks,
return visits, speech) are checked against the outcome records. Each call exactly one."""

import asyncio
import os
import sys
import time
from pathlib import Path

from ivr.app import Hotline
from ivr.cdr_audit import audit, cdr_file, read_cdr
from tests.e2e.conftest import Calls


async def test_every_call_of_the_session_has_exactly_one_outcome(hotline: Hotline, calls: Calls) -> None:
    assert hotline.pbx is not None and hotline.redis is not None
    last = await calls.dial(keys="111")  # Mandarin, inquiries, balance: at least one call for sure
    await calls.outcome(last)
    path = cdr_file(hotline.pbx.host_path(hotline.pbx.instance_dir()))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not path.exists() or last not in path.read_text()):
        await asyncio.sleep(0.5)  # Asterisk writes the CDR when the call is over
    await asyncio.sleep(6)  # every call of the session has ended more than `settle` seconds ago
    rows = read_cdr(path.read_text())
    report = await audit(rows, hotline.redis, now=time.time(), settle=5)
    assert report.checked >= 1
    assert report.mismatches == 0, (report.missing, report.duplicated)

    # The same through the command an operator runs.
    env = {**os.environ, "HOTLINE_REDIS_PORT": str(hotline.settings.redis_port)}
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "hotline"), "reconcile", "--cdr", str(path), "--settle", "5",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode == 0, (out, err)
    assert b" 0 mismatch(es)" in out
