"""Runs last in the end-to-end session (files run in name order): Asterisk's own CDRs of every call
placed on the session's hotline (self-service, queues, abandons, fallbacks, a controller stopped
mid-call, a `finish` that never came, callbacks, return visits, speech) are checked against the
outcome records. Each call exactly one. (Tests with an Asterisk of their own reconcile their own.)"""

import asyncio
import os
import sys
import time
from pathlib import Path

from ivr.app import Hotline
from ivr.cdr_audit import RECORDED_CONTEXTS, audit, cdr_file, read_cdr
from tests.e2e.conftest import PLACED, Calls


async def test_every_call_of_the_session_has_exactly_one_outcome(hotline: Hotline, calls: Calls) -> None:
    assert hotline.pbx is not None and hotline.redis is not None
    last = await calls.dial(keys="111")  # Mandarin, inquiries, balance: at least one call for sure
    await calls.outcome(last)
    path = cdr_file(hotline.pbx.host_path(hotline.pbx.instance_dir()))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not path.exists() or last not in path.read_text()):
        await asyncio.sleep(0.5)  # Asterisk writes the CDR when the call is over
    # Longer than the AMI watchdog's grace (15 s): a record it writes for a `finish` that never came
    # is there before the calls are judged.
    await asyncio.sleep(20)
    rows = read_cdr(path.read_text())
    report = await audit(rows, hotline.redis, now=time.time(), settle=20)
    assert report.mismatches == 0, (report.missing, report.duplicated)
    judged = {row.uniqueid for row in rows if row.context in RECORDED_CONTEXTS}
    placed = PLACED[id(hotline)]
    assert set(placed) <= judged, sorted(set(placed) - judged)  # every call the tests placed was judged
    assert report.checked >= len(placed) and report.settling == 0

    # The same through the command an operator runs.
    env = {**os.environ, "HOTLINE_REDIS_PORT": str(hotline.settings.redis_port)}
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "hotline"), "reconcile", "--cdr", str(path), "--settle", "20",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode == 0, (out, err)
    assert b" 0 mismatch(es)" in out
