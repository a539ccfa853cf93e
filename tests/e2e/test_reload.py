"""Publishing edited routing rules to the running hotline: queues and agents change, calls stay."""

from pathlib import Path

import pytest

from ivr.app import Hotline
from ivr.config import SAMPLE_ROUTING
from ivr.yamldoc import ConfigError
from tests.e2e.conftest import Calls

pytestmark = pytest.mark.e2e


async def test_a_reload_adds_queues_moves_agents_and_refuses_broken_rules(
    hotline: Hotline, calls: Calls, tmp_path: Path
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
    try:
        waiting = await calls.dial(keys="", wait=0.5, hold=20)  # a call in progress during the reload
        result = await hotline.reload()
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
        record = await calls.outcome(waiting)
        assert record.disposition.value != "failed"  # the call in progress went on
    finally:
        hotline.settings.routing = original
        await hotline.reload()
    assert "agent1002 (PJSIP/agent1002" in await calls.cli("queue show hotline-mobile")
