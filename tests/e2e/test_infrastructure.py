"""Redis slowed, stopped and restarted under real calls, with a hotline (and Asterisk) of the
test's own: callers are still served (as public when the customer lookup cannot answer), and the
outcomes written while Redis was away are journaled locally and replayed once, without duplicates.
Asterisk's CDRs for the instance are then reconciled with the records."""

import asyncio
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ivr.app import Hotline
from ivr.cdr_audit import audit, cdr_file, read_cdr
from ivr.menu.schema import CustomerClass
from ivr.outcomes import STREAM_KEY, OutcomeRecord
from ivr.services import LocalRedis
from routing.customers import Customer, CustomerDirectory
from tests.conftest import free_port
from tests.e2e.conftest import Calls, own_settings

pytestmark = pytest.mark.e2e


async def outcome(app: Hotline, uniqueid: str, timeout: float = 60) -> OutcomeRecord:
    """Polls as a dashboard would: a Redis that does not answer now may answer in a moment."""
    assert app.outcomes is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            record = await app.outcomes.get(uniqueid)
        except (RedisError, OSError):
            record = None
        if record is not None:
            return record
        await asyncio.sleep(0.5)
    raise AssertionError(f"no outcome for {uniqueid}")


async def stream_count(redis: Redis, uniqueid: str) -> int:
    entries = await redis.xrange(STREAM_KEY, "-", "+")
    return sum(1 for _, fields in entries if fields.get(b"uniqueid") == uniqueid.encode())


async def test_redis_slowed_stopped_and_restarted_under_real_calls(tmp_path: Path, hotline: Hotline) -> None:
    server = LocalRedis(free_port(), tmp_path / "redis")
    await server.start()
    app = Hotline(own_settings("redisfault", tmp_path / "state", server.url, hotline.settings.built_prompts_dir))
    await app.start()
    client = Redis.from_url(server.url)
    try:
        assert app.ami is not None and app.outcomes is not None and app.pbx is not None
        await app.ami.wait_ready(30)
        calls = Calls(app)
        key_number = "13911110000"
        await CustomerDirectory(client).save(Customer(key_number, CustomerClass.KEY, "VIP"))

        # Slowed: every client paused for 4 s while the call starts. The lookup gives up after its
        # 1 s deadline and the key account is served as public; the menu goes on.
        admin = Redis.from_url(server.url)
        await admin.execute_command("CLIENT", "PAUSE", "4000", "ALL")
        await admin.aclose()
        assert app.directory is not None and app.router is not None
        started = time.monotonic()  # what the IVR does before it answers: all bounded, side by side
        customer, _, _ = await asyncio.gather(app.directory.lookup(key_number),
                                              app.router.record_call(key_number, "probe"), app.router.switches())
        assert customer.customer_class is CustomerClass.PUBLIC and time.monotonic() - started < 1.5
        slowed = await calls.dial(keys="111", number=key_number, wait=2.5)
        record = await outcome(app, slowed)
        assert record.customer_class == "public" and record.menu_path[-1] == "goodbye", record

        # Stopped: the call is served and its outcome journaled on disk.
        await server.stop()
        started = time.monotonic()
        stopped = await calls.dial(keys="111", wait=2.5)
        journal = app.settings.outcome_journal
        while time.monotonic() - started < 60 and (not journal.exists() or stopped not in journal.read_text()):
            await asyncio.sleep(0.5)
        assert stopped in journal.read_text()

        # Restarted: the journal is replayed into Redis (every 5 s), once.
        await server.start()
        record = await outcome(app, stopped, timeout=10)  # the replayer runs every 5 s
        assert record.menu_path[-1] == "goodbye"
        assert await app.outcomes.replay_journal() == 0  # nothing left to replay
        await client.aclose()
        client = Redis.from_url(server.url)
        assert await stream_count(client, stopped) == 1

        # Asterisk's own books agree: every call of this instance has exactly one record.
        path = cdr_file(app.pbx.host_path(app.pbx.instance_dir()))
        await asyncio.sleep(6)
        report = await audit(read_cdr(path.read_text()), client, now=time.time(), settle=5)
        assert report.checked >= 2 and report.mismatches == 0, (report.missing, report.duplicated)
    finally:
        await client.aclose()
        await app.stop()
        await server.stop()
