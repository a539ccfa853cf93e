"""End-to-end: the whole hotline (real Asterisk from the cached chroot, real Redis, the controller
in this process) on ports of its own, and helpers that place real calls through AMI Originate."""

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ivr.app import Hotline
from ivr.config import Settings
from ivr.outcomes import OutcomeRecord
from tests.conftest import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
async def hotline(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Hotline]:
    state = Path(tmp_path_factory.mktemp("hotline-state"))
    settings = Settings(
        state_dir=state,
        agi_port=free_port(),
        ami_port=free_port(),
        web_port=free_port(),
        redis_port=free_port(),
        sip_port=free_port(),
        pbx_name=f"e2e-{os.getpid()}",
        ami_secret=uuid.uuid4().hex,
        drain_timeout=1.0,
        prompts_dir=Path(os.environ.get("HOTLINE_TEST_PROMPTS", state / "prompts")),
        pbx_ephemeral=True,
    )
    app = Hotline(settings)
    await app.start()
    assert app.ami is not None
    await app.ami.wait_ready(30)
    yield app
    await app.stop()


def own_settings(name: str, state_dir: Path, redis_url: str, prompts_dir: Path) -> Settings:
    """Settings for a Hotline (and Asterisk instance) of a test's own, beside the session's."""
    return Settings(
        state_dir=state_dir, agi_port=free_port(), ami_port=free_port(), web_port=free_port(),
        sip_port=free_port(), pbx_name=f"{name}-{os.getpid()}", ami_secret=uuid.uuid4().hex,
        local_redis=False, redis_url=redis_url, drain_timeout=1.0, prompts_dir=prompts_dir, pbx_ephemeral=True,
    )


PLACED: dict[int, list[str]] = {}  # id(hotline) -> the calls the tests placed through it (reconciliation)


@dataclass
class Calls:
    hotline: Hotline

    async def dial(self, *, keys: str = "", number: str = "", name: str = "Test Caller",
                   gap: float = 2.0, wait: float = 2.0, hold: float = 60.0, context: str = "hotline-inbound",
                   extra: dict[str, str] | None = None) -> str:
        """Place a real call: a Local caller channel that presses ``keys`` into the hotline entry."""
        assert self.hotline.ami is not None
        uniqueid = f"t-{uuid.uuid4().hex[:16]}"
        # A number of its own per call unless given: repeat callers are escalated, on purpose.
        number = number or f"1380{int(uuid.uuid4().int % 10**7):07d}"
        result = await self.hotline.ami.originate(
            "Local/s@hotline-test-caller", context=context, exten="10000",
            caller_id=f'"{name}" <{number}>', channel_id=uniqueid, other_channel_id=uniqueid + "-c",
            variables={"__CALLER_KEYS": keys, "__CALLER_GAP": str(gap), "__CALLER_WAIT": str(wait),
                       "__CALLER_HOLD": str(hold), **(extra or {})},
        )
        assert result.success, result.reason
        PLACED.setdefault(id(self.hotline), []).append(uniqueid)
        return uniqueid

    async def outcome(self, uniqueid: str, timeout: float = 90.0) -> OutcomeRecord:
        assert self.hotline.outcomes is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = await self.hotline.outcomes.get(uniqueid)
            if record is not None:
                return record
            await asyncio.sleep(0.25)
        raise AssertionError(f"no outcome for {uniqueid} within {timeout}s")

    async def cli(self, command: str) -> str:
        assert self.hotline.pbx is not None
        return await self.hotline.pbx.rx(command)

    async def queue_entries(self, queue: str) -> dict[str, dict[str, str]]:
        """Callers waiting in a queue, by uniqueid, from AMI QueueStatus."""
        assert self.hotline.ami is not None
        replies = await self.hotline.ami.action({"Action": "QueueStatus", "Queue": queue}, as_list=True)
        return {str(e.get("Uniqueid")): dict(e) for e in replies if e.get("Event") == "QueueEntry"}

    async def wait_in_queue(self, queue: str, uniqueid: str, timeout: float = 60.0) -> dict[str, str]:
        """Until the caller is among the queue's waiting callers; returns its QueueEntry."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = (await self.queue_entries(queue)).get(uniqueid)
            if entry is not None:
                return entry
            await asyncio.sleep(0.25)
        raise AssertionError(f"{uniqueid} did not reach {queue}: {await self.cli(f'queue show {queue}')}")


@pytest.fixture
def calls(hotline: Hotline) -> Calls:
    return Calls(hotline)
