"""Shared fixtures: a real redis-server of the tests' own (never fakeredis)."""

import array
import random
import socket
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from ivr.services import LocalRedis

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


def add_silence(path: Path, seconds: float) -> None:
    """Append silence to an 8 kHz 16-bit mono WAV: a phone keeps sending (silent) audio after the
    caller's words, and that is what ends a recording or a barge-in."""
    with wave.open(str(path), "rb") as source:
        params, frames = source.getparams(), source.readframes(source.getnframes())
    with wave.open(str(path), "wb") as target:
        target.setparams(params)
        target.writeframes(frames + b"\x00\x00" * int(params.framerate * seconds))


def write_noise(path: Path, seconds: float = 1.5) -> None:
    """Loud broadband noise, 8 kHz 16-bit mono WAV: nothing a caller would say."""
    rng = random.Random(7)
    samples = array.array("h", (rng.randint(-9000, 9000) for _ in range(int(8000 * seconds))))
    with wave.open(str(path), "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(samples.tobytes())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
async def redis_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalRedis]:
    server = LocalRedis(free_port(), Path(tmp_path_factory.mktemp("redis")))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def redis(redis_server: LocalRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    await client.flushdb()
    yield client
    await client.aclose()
