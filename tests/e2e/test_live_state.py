"""Live queue state after an AMI disconnect and an Asterisk restart matches Asterisk's `queue show`."""

import asyncio
import re
from pathlib import Path

import aiohttp
import pytest

from ivr.app import Hotline
from ivr.services import LocalRedis
from tests.e2e.conftest import Calls, own_settings

pytestmark = pytest.mark.e2e


def members_and_callers(show: str) -> tuple[set[str], set[str]]:
    """Member interfaces and waiting callers' channels from one queue's `queue show`."""
    members, callers, section = set(), set(), ""
    for line in show.splitlines():
        stripped = line.strip()
        if stripped.startswith("Members:") or stripped.startswith("No Members"):
            section = "members"
        elif stripped.startswith("Callers:") or stripped.startswith("No Callers"):
            section = "callers"
        elif section == "members" and (match := re.match(r"\S+ \(([^ )]+)", stripped)):
            members.add(match.group(1))
        elif section == "callers" and (match := re.match(r"\d+\. (\S+) \(wait", stripped)):
            callers.add(match.group(1))
    return members, callers


async def assert_matches_asterisk(app: Hotline, calls: Calls) -> None:
    assert app.live is not None and app.rules is not None
    for skill in app.rules.skills.values():
        members, callers = members_and_callers(await calls.cli(f"queue show {skill.queue}"))
        live_members = {a.interface for a in app.live.agents.values() if a.queue == skill.queue}
        live_callers = {c.channel for c in app.live.waiting.values() if c.queue == skill.queue}
        assert live_members == members, (skill.queue, live_members, members)
        assert live_callers == callers, (skill.queue, live_callers, callers)


async def live_view(app: Hotline) -> dict[str, object]:
    """What the dashboard reads."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{app.settings.web_port}/api/live") as response:
            return await response.json()  # type: ignore[no-any-return]


async def wait_until(predicate, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.2)


async def test_live_state_survives_an_asterisk_restart(redis_server: LocalRedis, tmp_path: Path,
                                                       hotline: Hotline) -> None:
    app = Hotline(own_settings("restart", tmp_path, redis_server.url, hotline.settings.built_prompts_dir))
    await app.start()
    try:
        assert app.ami is not None and app.live is not None and app.pbx is not None
        await app.ami.wait_ready(30)
        calls = Calls(app)
        await wait_until(lambda: app.live is not None and app.live.resyncs >= 1 and len(app.live.agents) >= 4)
        first = await calls.dial(keys="10", wait=1, gap=1.5, hold=60)  # waits in hotline-general
        await calls.wait_in_queue("hotline-general", first)
        await wait_until(lambda: first in app.live.waiting)
        await assert_matches_asterisk(app, calls)
        assert app.live.agents["hotline-general|PJSIP/agent1001"].state == "logged_out"  # phone not registered

        # Asterisk restarts: AMI drops, reconnects with backoff, agents are re-applied, state rebuilt.
        connections = app.ami.connections
        assert not app.live.stale
        await app.pbx.stop()
        await wait_until(lambda: app.live is not None and app.live.stale)  # the dashboard is told not to trust it
        assert (await live_view(app))["stale"] is True
        await app.pbx.start()
        await app.ami.wait_ready(30)
        await wait_until(lambda: app.ami is not None and app.ami.connections > connections)
        await wait_until(lambda: app.live is not None and first not in app.live.waiting)  # that call died
        second = await calls.dial(keys="10", wait=1, gap=1.5, hold=60)
        await calls.wait_in_queue("hotline-general", second)
        await wait_until(lambda: second in app.live.waiting)
        await wait_until(lambda: len(app.live.agents) >= 10)  # every membership of the rules again
        await assert_matches_asterisk(app, calls)
        await wait_until(lambda: app.live is not None and not app.live.stale)
        assert (await live_view(app))["stale"] is False
    finally:
        await app.stop()
