"""Stopping the hotline with a caller waiting in a queue: the caller's outcome is still recorded."""

import os
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis

from ivr.app import Hotline
from ivr.config import Settings
from ivr.outcomes import Disposition, OutcomeStore
from ivr.services import LocalRedis
from tests.conftest import free_port
from tests.e2e.conftest import Calls

pytestmark = pytest.mark.e2e


async def test_outcomes_of_calls_cut_off_by_a_shutdown_are_kept(redis_server: LocalRedis, tmp_path: Path,
                                                                 hotline: Hotline) -> None:
    settings = Settings(
        state_dir=tmp_path, agi_port=free_port(), ami_port=free_port(), web_port=free_port(),
        sip_port=free_port(), pbx_name=f"shutdown-{os.getpid()}", ami_secret=uuid.uuid4().hex,
        local_redis=False, redis_url=redis_server.url, drain_timeout=1.0,
        prompts_dir=hotline.settings.built_prompts_dir,
    )
    app = Hotline(settings)
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
