"""Settings: defaults < TOML file < HOTLINE_* environment < values given in code."""

from pathlib import Path

import pytest

from ivr.config import SAMPLE_MENU, Settings, SettingsProblem, load_settings


def test_defaults_run_the_bundled_sample_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOTLINE_CONFIG", raising=False)
    settings = Settings()
    assert settings.menu == SAMPLE_MENU and settings.local_pbx and settings.local_redis
    assert (settings.agi_host, settings.ami_host, settings.web_host) == ("127.0.0.1",) * 3


def test_file_then_environment_then_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "hotline.toml"
    config.write_text('agi_port = 5000\nweb_port = 9000\nweb_host = "0.0.0.0"\n')
    monkeypatch.setenv("HOTLINE_WEB_PORT", "9100")
    settings = load_settings(str(config))
    assert (settings.agi_port, settings.web_port, settings.web_host) == (5000, 9100, "0.0.0.0")
    assert load_settings(str(config), web_port=9200).web_port == 9200


def test_unknown_setting_in_the_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "hotline.toml"
    config.write_text("agi_prot = 5000\n")
    with pytest.raises(SettingsProblem, match="agi_prot: unknown setting"):
        load_settings(str(config))
    with pytest.raises(SettingsProblem, match="does not exist"):
        load_settings(str(tmp_path / "missing.toml"))


def test_lists_from_the_environment_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTLINE_AGI_ALLOWED_PEERS", "127.0.0.0/8, 10.1.0.0/16")
    assert load_settings().agi_allowed_peers == ["127.0.0.0/8", "10.1.0.0/16"]
