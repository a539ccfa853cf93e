"""Real Asterisk throughput: calls through the sample menu to a queue, against the same menu
written as plain Asterisk dialplan ([hotline-bench-plain] in asterisk/conf/extensions.conf, the
native limit), on one Asterisk instance the hotline starts for the run.

Calls arrive at a fixed rate for a while, each a Local caller that presses 1 (Mandarin) and 0 (an
agent), hears the transfer announcement (4.2 s), talks 2 s to a Local seat, hears the survey
question (the sample's general skill asks for one) and hangs up during it.

The calls are placed by a process of its own (the load generator, over its own AMI connection),
so the controller's CPU is the hotline's work alone. The controller runs on uvloop, as `hotline
serve` does. For each variant: calls that reached the queue, the CPU time per call of each part
and the capacity that implies on this machine's cores. The plain dialplan's cost is Asterisk's
alone: a plain deployment has no controller and no Redis (what they spent watching those calls
is shown, not counted). Capacity, not the arrival rate, is the comparison: both variants are
offered the same load.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.agi_engine import cpu_seconds, free_port

QUEUE = "hotline-general"
RATE = 8.0  # calls a second offered
SECONDS = 10.0  # per round and variant
ROUNDS = 3  # the variants take turns, so a slow spell of this shared machine falls on both
WATCHDOG_GRACE = 0.5  # seconds after a hangup before ivr/reconcile.py checks the call's record (15 in service)
SEATS = 60
ROOT = Path(__file__).resolve().parent.parent
CALLER = {"__CALLER_KEYS": "10", "__CALLER_WAIT": "1", "__CALLER_GAP": "1.5", "__CALLER_HOLD": "9"}


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


async def place_calls(port: int, user: str, secret: str, context: str, exten: str, prompts: str,
                      first_number: int) -> None:
    """The load generator (a process of its own): offers RATE calls a second for SECONDS, prints
    "placed N", counts the callers that join the queue until its stdin closes, then prints what
    it saw and its own CPU as JSON."""
    from routing.ami import AmiClient

    ami = AmiClient("127.0.0.1", port, user, secret)
    joined: set[str] = set()
    ami.on("QueueCallerJoin", lambda event: joined.add(str(event.get("Uniqueid", ""))))
    await ami.start()
    await ami.wait_ready(30)
    placed: list[str] = []

    async def one(n: int) -> None:
        uniqueid = f"b-{uuid.uuid4().hex[:16]}"
        result = await ami.originate(
            "Local/s@hotline-test-caller", context=context, exten=exten,
            caller_id=f'"Bench" <139{first_number + n:08d}>',
            channel_id=uniqueid, other_channel_id=uniqueid + "-c", wait=False,
            variables={**CALLER, "__BENCH_PROMPTS": prompts})
        if result.success:
            placed.append(uniqueid)

    started = time.monotonic()
    tasks = []
    for n in range(int(RATE * SECONDS)):
        await asyncio.sleep(max(0.0, started + n / RATE - time.monotonic()))
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    print(f"placed {len(placed)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # the parent closes it
    await ami.close()
    print(json.dumps({"placed": placed, "joined": [u for u in placed if u in joined],
                      "cpu": time.process_time()}), flush=True)


async def offered(app, context: str, exten: str, prompts: str,  # type: ignore[no-untyped-def]
                  first_number: int) -> tuple[int, int, dict[str, float], float]:
    """Offer the calls of one variant; returns calls placed, calls queued, CPU seconds per part
    (Asterisk, Redis, controller, load generator), wall seconds."""
    assert app.pbx is not None
    settings = app.settings
    parts = {"Asterisk": pids_of(f"/{settings.pbx_name}/"), "Redis": pids_of(f":{settings.redis_port}"),
             "controller": [os.getpid()]}
    cpu_before = {part: total_cpu(pids) for part, pids in parts.items()}
    started = time.monotonic()
    generator = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.asterisk_throughput", "call", str(settings.ami_port), settings.ami_user,
        app.ami_secret, context, exten, prompts, str(first_number), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        cwd=ROOT)
    assert generator.stdin is not None and generator.stdout is not None
    line = (await generator.stdout.readline()).decode()
    if not line.startswith("placed"):
        raise RuntimeError(f"load generator failed: {line!r}")
    for _ in range(240):  # until every call is over
        if re.search(r"^0 active channels", await app.pbx.rx("core show channels count"), re.MULTILINE):
            break
        await asyncio.sleep(0.5)
    # The outcome watchdog checks each call a grace after its hangup (made short for the bench):
    # that work is the call's too, so the window takes it in.
    await asyncio.sleep(WATCHDOG_GRACE + 2.5)
    wall = time.monotonic() - started
    cpu = {part: total_cpu(pids) - cpu_before[part] for part, pids in parts.items()}
    generator.stdin.close()
    seen = json.loads(await generator.stdout.readline())
    await generator.wait()
    cpu["load generator"] = seen["cpu"]
    placed, queued = seen["placed"], set(seen["joined"])
    missing = [u for u in placed if u not in queued]
    if missing and app.outcomes is not None:  # why: the calls' own records
        records = [await app.outcomes.get(u) for u in missing[:5]]
        why = [(r.disposition.value, r.menu_path, r.fallback_reason) if r else None for r in records]
        print("  not queued:", why, file=sys.stderr)
    return len(placed), len(queued), cpu, wall


Totals = tuple[str, int, int, dict[str, float], float]  # variant, placed, queued, CPU s per part, wall s


def counted_ms(index: int, queued: int, cpu: dict[str, float]) -> float:
    """CPU per call that counts: Asterisk alone for the plain dialplan (the first variant), the
    hotline's Asterisk, Redis and controller."""
    parts = ("Asterisk",) if index == 0 else ("Asterisk", "Redis", "controller")
    return 1000 * sum(cpu.get(part, 0.0) for part in parts) / max(queued, 1)


async def scenario() -> tuple[list[Totals], list[list[float]]]:
    from ivr.app import Hotline
    from ivr.config import Settings

    state = Path(tempfile.mkdtemp(prefix="hotline-bench-pbx-"))
    settings = Settings(state_dir=state, agi_port=free_port(), ami_port=free_port(), web_port=free_port(),
                        redis_port=free_port(), sip_port=free_port(), pbx_name=f"bench-{os.getpid()}",
                        ami_secret=uuid.uuid4().hex, pbx_ephemeral=True, drain_timeout=1.0)
    app = Hotline(settings)
    await app.start()
    try:
        assert app.ami is not None and app.pbx is not None
        await app.ami.wait_ready(30)
        # The speech model loads in the background at start: 2-3 s of CPU that is not the calls'.
        if app.speech is not None:
            await app.speech.engine.preload()  # returns once the start's loading is done
        assert app.watchdog is not None
        app.watchdog.grace_seconds = WATCHDOG_GRACE
        for n in range(SEATS):
            await app.ami.queue_add(QUEUE, f"Local/seat{n}@hotline-test-agent/n", member_name=f"bench-seat-{n}")
        prompts = app.pbx.instance_dir() + "/prompts"
        variants = (("plain dialplan", "hotline-bench-plain", "s"),
                    ("hotline (FastAGI + Redis)", "hotline-inbound", "10000"))
        totals: dict[str, tuple[int, int, dict[str, float], float]] = {}
        by_round: list[list[float]] = []  # each round's counted CPU per call, per variant
        for round_ in range(ROUNDS):
            by_round.append([])
            for index, (name, context, exten) in enumerate(variants):
                # Distinct caller numbers in every round and variant: none is a repeat caller.
                first_number = (round_ * len(variants) + index) * 1_000_000
                placed, queued, cpu, wall = await offered(app, context, exten, prompts, first_number)
                by_round[-1].append(counted_ms(index, queued, cpu))
                before = totals.get(name, (0, 0, {}, 0.0))
                totals[name] = (before[0] + placed, before[1] + queued,
                                {part: before[2].get(part, 0.0) + seconds for part, seconds in cpu.items()},
                                before[3] + wall)
        return [(name, *totals[name]) for name, _, _ in variants], by_round
    finally:
        await app.stop()


def run() -> tuple[str, float]:
    """The section's markdown, and the hotline's throughput as a share of the plain dialplan's:
    the median round's (each round runs both variants back to back, so a slow spell of this
    shared machine falls on both; totals over the rounds move by up to a tenth with those spells)."""
    # In a process of its own, on uvloop like `hotline serve`: the bench's other parts use the
    # default loop in this one.
    output = subprocess.run([sys.executable, "-m", "bench.asterisk_throughput", "measure"], check=True,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT).stdout
    results, by_round = json.loads(output.splitlines()[-1])
    ratios = [plain / hotline for plain, hotline in by_round]
    ratio = statistics.median(ratios)
    cores = os.cpu_count() or 1
    lines = [
        "## Real Asterisk\n",
        f"One Asterisk 22 instance; {RATE:.0f} calls a second offered to each variant in turn, {ROUNDS} rounds of "
        f"{SECONDS:.0f} s (a slow spell of this shared machine falls on both), by a load generator of its own, "
        "the same Local callers (1, then 0, the transfer announcement, 2 s with a seat, then the survey), "
        f"{SEATS} Local seats. CPU per call of Asterisk, Redis and the controller "
        "(uvloop, as `hotline serve`), measured once the speech model has loaded. A plain deployment is "
        "Asterisk alone, so the plain row counts Asterisk's CPU only; what the idle controller and Redis "
        "spent meanwhile (watching those calls over AMI) is in brackets. Capacity is this machine's "
        f"{cores} cores divided by the counted CPU.\n",
        "| variant | calls | reached the queue | counted CPU ms/call | Asterisk / Redis / controller ms/call "
        "| load generator ms/call | capacity calls/s | × plain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    plain = 0.0
    for index, (name, placed, queued, cpu, _) in enumerate(results):
        per = {part: 1000 * seconds / max(queued, 1) for part, seconds in cpu.items()}
        if index == 0:  # the plain dialplan: Asterisk alone
            counted = per["Asterisk"]
            split = f"{per['Asterisk']:.1f} / ({per['Redis']:.1f}) / ({per['controller']:.1f})"
        else:
            counted = per["Asterisk"] + per["Redis"] + per["controller"]
            split = f"{per['Asterisk']:.1f} / {per['Redis']:.1f} / {per['controller']:.1f}"
        capacity = cores * 1000 / counted
        plain = plain or capacity
        lines.append(f"| {name} | {placed} | {queued} | {counted:.1f} | {split} | {per['load generator']:.1f} | "
                     f"{capacity:.0f} | {capacity / plain:.3f} |")
    rounds = ", ".join(f"{r:.3f}" for r in ratios)
    lines.append(f"\nRound by round (plain's counted CPU per call over the hotline's): {rounds}; the "
                 f"median round, **{ratio:.3f}x**, is the figure the target takes. The rows above pool the "
                 "rounds.")
    return "\n".join(lines) + "\n", ratio


def main() -> None:
    import uvloop

    if sys.argv[1] == "call":
        port, user, secret, context, exten, prompts, first_number = sys.argv[2:9]
        uvloop.run(place_calls(int(port), user, secret, context, exten, prompts, int(first_number)))
    else:
        print(json.dumps(uvloop.run(scenario())))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main()
    else:
        print(run()[0])
