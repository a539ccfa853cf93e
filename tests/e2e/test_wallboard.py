"""The supervisors' wallboard in Debian's chromium (Playwright): a real call appears on it and
leaves it; a storm of queue events from a fake Asterisk all reach it, in order; hostile names
stay text; a lost AMI connection shows as stale."""

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from bench.fake_ami import FakeAsteriskAmi
from bench.wallboard import CHROMIUM, CHROMIUM_ARGS
from ivr.app import Hotline
from ivr.config import Settings
from ivr.services import LocalRedis
from tests.conftest import free_port
from tests.e2e.conftest import Calls

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def wallboard(browser: Browser, web_port: int) -> Page:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"http://127.0.0.1:{web_port}/wallboard?measure")
    await page.wait_for_function("wallboardStats.connected", timeout=15_000)
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def test_a_real_call_waiting_in_a_queue_appears_on_the_wallboard_then_leaves(
        hotline: Hotline, calls: Calls, browser: Browser) -> None:
    assert hotline.ami is not None
    page = await wallboard(browser, hotline.settings.web_port)
    stamps: dict[str, str] = {}
    hotline.ami.on("QueueCallerJoin", lambda event: stamps.setdefault(str(event.get("Uniqueid")),
                                                                       str(event.get("Timestamp"))))
    changes = hotline.live_feed.subscribe()
    try:
        uniqueid = await calls.dial(keys="10", wait=1, gap=1.5, hold=10)  # Mandarin, then an agent: none is free
        row = f"#waiting tr[data-uniqueid='{uniqueid}']"
        await page.wait_for_selector(row, timeout=30_000)
        cells = await page.locator(f"{row} td").all_text_contents()
        assert cells[:2] == ["hotline-general", "public"], cells
        await page.wait_for_selector(row, state="detached", timeout=30_000)  # the caller hung up
        published = [json.loads(c) for c in await changes.next_changes()]
    finally:
        changes.close()
    join = next(c for c in published if c["kind"] == "join" and c["caller"]["uniqueid"] == uniqueid)
    assert join["at"] == float(stamps[uniqueid])  # Asterisk's own event time (timestampevents)
    assert any(c["kind"] == "leave" and c["uniqueid"] == uniqueid for c in published)
    assert await page.evaluate("wallboardStats.gaps") == 0
    assert page.errors == []  # type: ignore[attr-defined]
    await page.close()


async def test_a_storm_of_queue_events_all_reaches_the_wallboard_in_order(
        browser: Browser, redis_server: LocalRedis, tmp_path: Path) -> None:
    fake = FakeAsteriskAmi(waiting_target=60)
    settings = Settings(state_dir=tmp_path, agi_port=free_port(), ami_port=await fake.start(), web_port=free_port(),
                        local_pbx=False, local_redis=False, redis_url=redis_server.url, ami_secret="x",
                        build_prompts=False, speech_models={})
    app = Hotline(settings)
    await app.start()
    try:
        assert app.ami is not None and app.live is not None
        await app.ami.wait_ready(10)
        page = await wallboard(browser, settings.web_port)
        count = ("wallboardStats.changes - (wallboardStats.kinds.snapshot || 0)"
                 " - (wallboardStats.kinds.priority || 0)")
        before = await page.evaluate(count)
        sent = await fake.storm(1000, 3.0)
        await page.wait_for_function(f"{count} >= {before + sent}", timeout=30_000)
        assert await page.evaluate(count) == before + sent
        assert await page.evaluate("wallboardStats.gaps") == 0
        latencies = await page.evaluate("wallboardStats.latencies")
        # Stamped by the fake, measured by the page (a resync's snapshot or aging may add a few).
        assert len(latencies) >= sent and min(latencies) > 0

        # What the page shows is what the controller holds.
        await asyncio.sleep(0.6)  # the page draws four times a second
        shown = dict(await page.evaluate(
            "[...document.querySelectorAll('.queue')].map(q => [q.querySelector('h3').textContent,"
            " q.querySelector('.big').textContent])"))
        waiting: dict[str, int] = {}
        for caller in app.live.waiting.values():
            waiting[caller.queue] = waiting.get(caller.queue, 0) + 1
        assert {q: int(n) for q, n in shown.items() if int(n)} == waiting
        assert sum(waiting.values()) == len(fake.waiting) > 50  # the fake keeps its own in step with what it sent

        # Names from Asterisk are text, never markup.
        hostile = '<img src=x onerror="window.pwned=1">'
        fake.emit("QueueCallerJoin", {"Queue": hostile, "Channel": "Local/x@y;1", "Uniqueid": "hostile-1",
                                      "Position": "1", "Count": "1"}, {"HOTLINE_CLASS": "key"})
        await page.wait_for_function(f"[...document.querySelectorAll('.queue h3')].some(h => h.textContent === "
                                     f"{json.dumps(hostile)})", timeout=10_000)
        assert await page.evaluate("typeof window.pwned") == "undefined"
        assert await page.evaluate("document.querySelectorAll('img').length") == 0

        # Asterisk goes away: the board says its view is stale instead of showing it as live.
        await fake.stop()
        await page.wait_for_function("document.getElementById('status').textContent.startsWith('stale')",
                                     timeout=10_000)
        assert page.errors == []  # type: ignore[attr-defined]
        await page.close()
    finally:
        await app.stop()
        await fake.stop()
