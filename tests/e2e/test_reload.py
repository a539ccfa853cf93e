"""Publishing edited routing rules to the running hotline: queues and agents change, calls stay."""

from pathlib import Path

import aiohttp
import pytest

from ivr.app import Hotline
from ivr.config import SAMPLE_ROUTING
from ivr.menu.loader import load_menu
from ivr.outcomes import Disposition
from ivr.web import ADMIN_HEADER
from ivr.yamldoc import ConfigError
from tests.e2e.conftest import Calls

pytestmark = pytest.mark.e2e


async def test_a_reload_adds_queues_moves_agents_and_refuses_broken_rules(
    hotline: Hotline, calls: Calls, tmp_path: Path, fixtures_dir: Path
) -> None:
    sample = SAMPLE_ROUTING.read_text()
    edited = sample.replace(
        "  fallback:   {queue: hotline-fallback}",
        "  fallback:   {queue: hotline-fallback}\n  roaming:    {queue: hotline-roaming}",
    ).replace("{general: 1, mobile: 1, broadband: 2}", "{general: 1, roaming: 1, broadband: 2}")
    assert edited != sample
    rules_file = tmp_path / "routing.yaml"
    rules_file.write_text(edited)
    original = hotline.settings.routing
    hotline.settings.routing = rules_file
    hotline.menu = load_menu(fixtures_dir / "menus" / "one-queue.yaml")  # until the reload: straight to a queue
    try:
        waiting = await calls.dial(keys="", wait=0.5, hold=20)  # a call in progress during the reload
        await calls.wait_in_queue("hotline-general", waiting)
        url = f"http://{hotline.settings.web_host}:{hotline.settings.web_port}/api/reload"
        async with aiohttp.ClientSession() as session:  # no admin token: refused, nothing published
            async with session.post(url) as response:
                assert response.status == 403
        assert "roaming" not in hotline.current_rules().skills
        async with aiohttp.ClientSession() as session:
            async with session.post(url, headers={ADMIN_HEADER: hotline.admin_token}) as response:
                result = await response.json()
        assert result["queues_reloaded"] and result["memberships_removed"] == 1, result
        assert "roaming" in hotline.current_rules().skills
        roaming = await calls.cli("queue show hotline-roaming")
        assert "agent1002 (PJSIP/agent1002" in roaming
        assert "agent1002" not in await calls.cli("queue show hotline-mobile")

        running = hotline.current_rules()
        rules_file.write_text(edited.replace("skills:", "skills: [", 1))
        with pytest.raises(ConfigError) as caught:
            await hotline.reload()
        assert f"{rules_file}:" in str(caught.value)
        assert hotline.current_rules() is running  # the live version is untouched
        await calls.wait_in_queue("hotline-general", waiting)  # the call in progress is still waiting
        record = await calls.outcome(waiting)
        assert record.disposition is Disposition.ABANDONED_QUEUE and record.queues == ["hotline-general"]
        assert record.wait_seconds is not None and record.wait_seconds > 15  # kept waiting until it hung up
    finally:
        hotline.settings.routing = original
        await hotline.reload()
    assert "agent1002 (PJSIP/agent1002" in await calls.cli("queue show hotline-mobile")
