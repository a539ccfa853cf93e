"""Stopping the hotline with a caller waiting in a queue: the caller's outcome is still recorded."""

from pathlib import Path

import pytest
from redis.asyncio import Redis

from ivr.app import Hotline
from ivr.outcomes import Disposition, OutcomeStore
from ivr.services import LocalRedis
from tests.e2e.conftest import Calls, own_settings

pytestmark = pytest.mark.e2e


async def test_outcomes_of_calls_cut_off_by_a_shutdown_are_kept(redis_server: LocalRedis, tmp_path: Path,
                                                                 hotline: Hotline) -> None:
    app = Hotline(own_settings("shutdown", tmp_path, redis_server.url, hotline.settings.built_prompts_dir))
    await app.start()
    assert app.ami is not None and app.outcomes is not None
    await app.ami.wait_ready(30)
    calls = Calls(app)
    queued = await calls.dial(keys="10", wait=1, gap=1.5)  # Mandarin, agent: waits in hotline-general
    await calls.wait_in_queue("hotline-general", queued)
    await app.stop()

    client = Redis.from_url(redis_server.url)
    record = await OutcomeStore(client, tmp_path / "journal").get(queued)
    await client.aclose()
    assert record is not None, "the queued caller's outcome was lost in the shutdown"
    assert record.disposition is Disposition.ABANDONED_QUEUE
    assert record.queue == "hotline-general"
