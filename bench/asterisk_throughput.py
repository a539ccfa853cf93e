"""Real Asterisk throughput: calls through the sample menu to a queue, against the same menu
written as plain Asterisk dialplan ([hotline-bench-plain] in asterisk/conf/extensions.conf, the
native limit), on one Asterisk instance the hotline starts for the run.

Calls arrive at a fixed rate for a while, each a Local caller that presses 1 (Mandarin) and 0 (an
agent) and hangs up a few seconds after reaching the queue, where Local seats answer. For each
variant: calls that reached the queue, the CPU time all parts spent per call (Asterisk, Redis
and this process, which holds the controller), and the capacity that implies on this machine's
cores. Capacity, not the arrival rate, is the comparison: both variants are offered the same load.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import time
import uuid
from pathlib import Path

from panoramisk.message import Message

from bench.agi_engine import cpu_seconds, free_port

QUEUE = "hotline-general"
RATE = 8.0  # calls a second offered
SECONDS = 25.0
SEATS = 60


def pids_of(fragment: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if fragment in command:
                found.append(int(entry))
    return found


def total_cpu(pids: list[int]) -> float:
    """CPU seconds of these processes (the ones gone since count as nothing more)."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


async def offered(app, context: str, exten: str, prompts: str,  # type: ignore[no-untyped-def]
                  joined: set[str]) -> tuple[int, int, dict[str, float], float]:
    """Offer RATE calls a second for SECONDS; returns calls placed, calls queued, CPU seconds per
    part (Asterisk, Redis, controller), wall seconds."""
    assert app.ami is not None and app.pbx is not None
    parts = {"Asterisk": pids_of(f"/{app.settings.pbx_name}/"), "Redis": pids_of(f":{app.settings.redis_port}"),
             "controller": [os.getpid()]}
    cpu_before = {part: total_cpu(pids) for part, pids in parts.items()}
    placed: list[str] = []
    started = time.monotonic()

    async def one() -> None:
        uniqueid = f"b-{uuid.uuid4().hex[:16]}"
        result = await app.ami.originate(
            "Local/s@hotline-test-caller", context=context, exten=exten, caller_id=f'"Bench" <1390{len(placed):07d}>',
            channel_id=uniqueid, other_channel_id=uniqueid + "-c", wait=False,
            variables={"__CALLER_KEYS": "10", "__CALLER_WAIT": "1", "__CALLER_GAP": "1.5", "__CALLER_HOLD": "4",
                       "__BENCH_PROMPTS": prompts})
        if result.success:
            placed.append(uniqueid)

    tasks = []
    for n in range(int(RATE * SECONDS)):
        await asyncio.sleep(max(0.0, started + n / RATE - time.monotonic()))
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    for _ in range(240):  # until every call is over
        if re.search(r"^0 active channels", await app.pbx.rx("core show channels count"), re.MULTILINE):
            break
        await asyncio.sleep(0.5)
    wall = time.monotonic() - started
    cpu = {part: total_cpu(pids) - cpu_before[part] for part, pids in parts.items()}
    missing = [u for u in placed if u not in joined]
    if missing and app.outcomes is not None:  # why: the calls' own records
        records = [await app.outcomes.get(u) for u in missing[:5]]
        print("  not queued:", [(r.disposition.value, r.menu_path, r.fallback_reason) if r else None for r in records])
    return len(placed), len(placed) - len(missing), cpu, wall


async def scenario() -> list[tuple[str, int, int, dict[str, float], float]]:
    from ivr.app import Hotline
    from ivr.config import Settings

    state = Path(tempfile.mkdtemp(prefix="hotline-bench-pbx-"))
    settings = Settings(state_dir=state, agi_port=free_port(), ami_port=free_port(), web_port=free_port(),
                        redis_port=free_port(), sip_port=free_port(), pbx_name=f"bench-{os.getpid()}",
                        ami_secret=uuid.uuid4().hex, pbx_ephemeral=True, drain_timeout=1.0)
    app = Hotline(settings)
    await app.start()
    joined: set[str] = set()

    async def on_join(event: Message) -> None:
        joined.add(str(event.get("Uniqueid", "")))

    try:
        assert app.ami is not None and app.pbx is not None
        await app.ami.wait_ready(30)
        # The speech model loads in the background at start: 2-3 s of CPU that is not the calls'.
        if app.speech is not None:
            await app.speech.engine.preload()  # returns once the start's loading is done
        app.ami.on("QueueCallerJoin", on_join)
        for n in range(SEATS):
            await app.ami.queue_add(QUEUE, f"Local/seat{n}@hotline-test-agent/n", member_name=f"bench-seat-{n}")
        prompts = app.pbx.instance_dir() + "/prompts"
        results = []
        variants = (("plain dialplan", "hotline-bench-plain", "s"),
                    ("hotline (FastAGI + Redis)", "hotline-inbound", "10000"))
        for name, context, exten in variants:
            placed, queued, cpu, wall = await offered(app, context, exten, prompts, joined)
            results.append((name, placed, queued, cpu, wall))
        return results
    finally:
        await app.stop()


def run() -> str:
    results = asyncio.run(scenario())
    cores = os.cpu_count() or 1
    lines = [
        "## Real Asterisk\n",
        f"One Asterisk 22 instance; {RATE:.0f} calls a second offered for {SECONDS:.0f} s to each variant, "
        f"the same Local callers (1, then 0, then 4 s in the queue), {SEATS} Local seats. CPU is Asterisk's, "
        "Redis's and this process's (the controller), per call, measured once the speech model has loaded; "
        "capacity is this machine's "
        f"{cores} cores divided by it.\n",
        "| variant | calls | reached the queue | CPU ms/call | of which Asterisk / Redis / controller "
        "| capacity calls/s | × plain |",
        "|---|---|---|---|---|---|---|",
    ]
    plain = None
    for name, placed, queued, cpu, _ in results:
        per_call = sum(cpu.values()) / max(queued, 1)
        capacity = cores / per_call
        plain = plain or capacity
        split = " / ".join(f"{1000 * cpu[part] / max(queued, 1):.1f}" for part in ("Asterisk", "Redis", "controller"))
        lines.append(f"| {name} | {placed} | {queued} | {per_call * 1000:.1f} | {split} | {capacity:.0f} | "
                     f"{capacity / plain:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
