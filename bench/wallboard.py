"""AMI event storm to the wallboard in a real browser: latency and events dropped.

A fake Asterisk (bench/fake_ami.py, a process of its own) sends queue events at 1,000 and then
10,000 a second, each stamped with its send time. The controller (``hotline serve``, its own
process, wired by its own composition root; no local Asterisk) turns each into a change of the
live view and pushes it to /wallboard, open in Debian's chromium driven by Playwright. The page
records, for every change, the delay from the event's stamp to its arrival, and any change
number it never got. Both clocks are this machine's.

The baseline in the same run ("relay") is the floor of this path: a bare process that reads the
same AMI stream, finds each event's stamp and pushes it over the same aiohttp-sse stack to the
same page, with no parsing into headers, no live view and no JSON library.

    .venv/bin/python -m bench.wallboard            # both, written as a markdown section
    .venv/bin/python -m bench.wallboard relay AMI_PORT WEB_PORT   # the baseline server itself
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.agi_engine import cpu_seconds, free_port

if TYPE_CHECKING:
    from playwright.async_api import Page

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "ivr" / "static" / "wallboard.html"
RATES = (1_000, 10_000)
SECONDS = 5.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@dataclass
class Storm:
    server: str
    rate: int
    sent: int = 0
    shown: int = 0  # changes from AMI events the page applied
    gaps: int = 0  # change numbers the page never got
    latencies: list[float] = field(default_factory=list)  # seconds, event stamp -> arrival in the page
    server_cpu: float = 0.0  # seconds over the storm and its drain
    generator_cpu: float = 0.0

    @property
    def dropped(self) -> int:
        return max(0, self.sent - self.shown) + self.gaps

    def ms(self, share: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class FakeAmiProcess:
    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "bench.fake_ami"], cwd=ROOT, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline().split()[1])

    def storm(self, rate: int, seconds: float) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"storm {rate} {seconds}\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline().split()[1])

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)


def start_server(kind: str, ami_port: int, state: Path) -> tuple[subprocess.Popen[bytes], int]:
    web_port = free_port()
    if kind == "relay":
        command = [sys.executable, "-m", "bench.wallboard", "relay", str(ami_port), str(web_port)]
        env = os.environ.copy()
    else:
        command = [sys.executable, "-m", "ivr.cli", "serve"]
        env = {**os.environ, "HOTLINE_LOCAL_PBX": "false", "HOTLINE_AMI_PORT": str(ami_port),
               "HOTLINE_AMI_SECRET": "bench", "HOTLINE_WEB_PORT": str(web_port), "HOTLINE_AGI_PORT": str(free_port()),
               "HOTLINE_REDIS_PORT": str(free_port()), "HOTLINE_STATE_DIR": str(state),
               "HOTLINE_BUILD_PROMPTS": "false", "HOTLINE_SPEECH_MODELS": "{}"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/wallboard", timeout=1):
                return process, web_port
        if process.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {process.returncode}")
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{kind} server did not come up")


async def measure(kind: str, rates: tuple[int, ...], seconds: float) -> list[Storm]:
    from playwright.async_api import async_playwright

    fake = FakeAmiProcess()
    storms: list[Storm] = []
    with tempfile.TemporaryDirectory(prefix="hotline-wallboard-") as state:
        try:
            server, web_port = start_server(kind, fake.port, Path(state))
        except RuntimeError:
            fake.stop()
            raise
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = await browser.new_page()
                await page.goto(f"http://127.0.0.1:{web_port}/wallboard?measure")
                await page.wait_for_function("window.wallboardStats.connected", timeout=30_000)
                await asyncio.sleep(2.0)  # the controller's first resync and agents settle
                for rate in rates:
                    storms.append(await storm(kind, rate, seconds, fake, server.pid, page))
                await browser.close()
        finally:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
            fake.stop()
    return storms


async def storm(kind: str, rate: int, seconds: float, fake: FakeAmiProcess, server_pid: int, page: Page) -> Storm:
    result = Storm(kind, rate)
    # Changes from AMI events: not the resyncs' snapshots, nor aging's priority raises (no event says so).
    read = ("({changes: wallboardStats.changes - (wallboardStats.kinds.snapshot || 0)"
            " - (wallboardStats.kinds.priority || 0), gaps: wallboardStats.gaps})")
    before = await page.evaluate(read)
    await page.evaluate("wallboardStats.latencies = []")
    server_cpu, generator_cpu = cpu_seconds(server_pid), cpu_seconds(fake.process.pid)
    result.sent = await asyncio.to_thread(fake.storm, rate, seconds)
    result.generator_cpu = cpu_seconds(fake.process.pid) - generator_cpu
    # Wait for the page to show all of it (or to stop getting any nearer).
    progress, still = -1, time.monotonic()
    while time.monotonic() - still < 5.0:
        now = await page.evaluate(read)
        shown = now["changes"] - before["changes"]
        if shown >= result.sent:
            break
        if shown != progress:
            progress, still = shown, time.monotonic()
        await asyncio.sleep(0.1)
    now = await page.evaluate(read)
    result.server_cpu = cpu_seconds(server_pid) - server_cpu
    result.shown = now["changes"] - before["changes"]
    result.gaps = now["gaps"] - before["gaps"]
    result.latencies = await page.evaluate("wallboardStats.latencies")
    print(f"  {kind} at {rate}/s: sent {result.sent}, shown {result.shown}, dropped {result.dropped}, "
          f"p50 {result.ms(0.5):.1f} ms, p99 {result.ms(0.99):.1f} ms", flush=True)
    return result


def run(rates: tuple[int, ...] = RATES, seconds: float = SECONDS) -> tuple[str, list[Storm]]:
    storms: list[Storm] = []
    for kind in ("relay", "hotline"):
        storms += asyncio.run(measure(kind, rates, seconds))
    lines = [
        "## AMI event storm to the wallboard\n",
        f"A fake Asterisk sends queue events (joins, answers, abandons, agent states) for {seconds:.0f} s at each rate "
        "to a process of its own; the wallboard page in headless chromium (Playwright) records each change's delay "
        "from the event's stamp to its arrival. *relay*: the floor, a bare process pushing each event's stamp over "
        "the same aiohttp-sse stack to the same page. *hotline*: `hotline serve` (no local Asterisk): AMI parse, the "
        "live view, its Redis mirror, the push. CPU is the server process's over the storm and its drain.\n",
        "| server | events/s | sent | shown | dropped | p50 ms | p99 ms | max ms | server CPU µs/event "
        "| fake AMI CPU µs/event |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in storms:
        lines.append(
            f"| {s.server} | {s.rate:,} | {s.sent:,} | {s.shown:,} | {s.dropped} | {s.ms(0.5):.1f} | {s.ms(0.99):.1f} "
            f"| {s.ms(1.0):.1f} | {1e6 * s.server_cpu / max(1, s.sent):.0f} "
            f"| {1e6 * s.generator_cpu / max(1, s.sent):.0f} |")
    ours = [s for s in storms if s.server == "hotline"]
    if ours:
        worst = max(ours, key=lambda s: s.rate)
        floor = next((s for s in storms if s.server == "relay" and s.rate == worst.rate), None)
        if floor is not None and floor.latencies and worst.latencies:
            lines.append(f"\nAt {worst.rate:,}/s the hotline's p99 is {worst.ms(0.99) - floor.ms(0.99):+.1f} ms "
                         f"against the relay's, its p50 {worst.ms(0.5) - floor.ms(0.5):+.1f} ms.\n")
    return "\n".join(lines) + "\n", storms


# -- the baseline server ------------------------------------------------------------------------

async def relay(ami_port: int, web_port: int) -> None:
    from aiohttp import web
    from aiohttp_sse import sse_response

    class Backlog(list[str]):
        def __init__(self) -> None:
            super().__init__()
            self.ready = asyncio.Event()

        __hash__ = object.__hash__  # type: ignore[assignment]

    subscribers: set[Backlog] = set()
    seq = 0

    async def stream(request: web.Request) -> web.StreamResponse:
        async with sse_response(request) as response:
            backlog = Backlog()
            subscribers.add(backlog)
            try:
                await response.send(json.dumps({"seq": seq, "now": time.time(), "stale": False, "queues": {},
                                                "agents": [], "waiting": []}), event="snapshot")
                while True:
                    await backlog.ready.wait()
                    backlog.ready.clear()
                    items = backlog[:]
                    backlog.clear()
                    await response.send("[" + ",".join(items) + "]", event="changes")
            except (ConnectionResetError, TimeoutError):
                pass
            finally:
                subscribers.discard(backlog)
        return response

    async def page(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE)

    app = web.Application()
    app.router.add_get("/wallboard", page)
    app.router.add_get("/api/live/stream", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", web_port).start()

    reader, writer = await asyncio.open_connection("127.0.0.1", ami_port)
    writer.write(b"Action: Login\r\nUsername: bench\r\nSecret: bench\r\n\r\n")
    unparsed = b""
    while data := await reader.read(1 << 16):
        blocks = (unparsed + data).split(b"\r\n\r\n")
        unparsed = blocks.pop()
        for block in blocks:
            start = block.find(b"\r\nTimestamp: ")
            if start < 0:
                continue
            end = block.find(b"\r\n", start + 13)
            seq += 1
            item = f'{{"seq":{seq},"kind":"event","at":{block[start + 13:end if end > 0 else None].decode()}}}'
            for backlog in subscribers:
                backlog.append(item)
                backlog.ready.set()


def main() -> None:
    if sys.argv[1:2] == ["relay"]:
        import uvloop

        uvloop.run(relay(int(sys.argv[2]), int(sys.argv[3])))
        return
    text, _ = run()
    print(text)


if __name__ == "__main__":
    main()
