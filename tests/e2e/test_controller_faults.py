"""The controller as a separate process under faults (`hotline serve`, which starts Asterisk and
Redis itself): SIGTERM with a caller in the menu, then SIGKILL with callers in the menu and a
restart; one of them hangs up while no controller is up at all. Each time the caller still
reaches a queue through the dialplan's fallback, and the call's outcome is recorded exactly once
(checked against Asterisk's CDRs)."""

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ivr.cdr_audit import audit, cdr_file, read_cdr
from ivr.outcomes import Disposition, OutcomeRecord, OutcomeStore
from routing.ami import AmiClient
from tests.conftest import free_port

pytestmark = pytest.mark.e2e
HOTLINE = [sys.executable, "-m", "ivr.cli"]
PBX = "asterisk/hotline-pbx"


class Serve:
    """One `hotline serve` process on the test's own ports and state folder."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self.output: list[str] = []

    @staticmethod
    def settings(tmp_path: Path) -> dict[str, str]:
        """One set of ports and one state folder: a restarted controller finds what it left."""
        return {
            **os.environ,
            "HOTLINE_STATE_DIR": str(tmp_path / "state"),
            "HOTLINE_AGI_PORT": str(free_port()),
            "HOTLINE_AMI_PORT": str(free_port()),
            "HOTLINE_WEB_PORT": str(free_port()),
            "HOTLINE_REDIS_PORT": str(free_port()),
            "HOTLINE_SIP_PORT": str(free_port()),
            "HOTLINE_PBX_NAME": f"faults-{os.getpid()}",
            "HOTLINE_PBX_EPHEMERAL": "true",
            "HOTLINE_DRAIN_TIMEOUT": "2",
        }

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *HOTLINE, "serve", env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert self.process.stdout is not None
        async with asyncio.timeout(180):
            while True:
                line = (await self.process.stdout.readline()).decode()
                assert line, "hotline serve exited:\n" + "".join(self.output)
                self.output.append(line)
                if line.startswith("hotline is up"):
                    break
        self._drain = asyncio.create_task(self.process.stdout.read())

    async def stop(self, sig: signal.Signals) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = await asyncio.wait_for(self.process.wait(), 90)
        rest = (await self._drain).decode()
        self.output.append(rest)
        return code

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.env['HOTLINE_REDIS_PORT']}/0"

    def _ami(self) -> AmiClient:
        secret = (Path(self.env["HOTLINE_STATE_DIR"]) / "ami-secret").read_text().strip()
        return AmiClient("127.0.0.1", int(self.env["HOTLINE_AMI_PORT"]), "hotline", secret)

    async def call_idle_in_the_menu(self, hold: int = 60) -> str:
        """A caller who presses nothing: the menu waits for keys for a good while."""
        ami = self._ami()
        await ami.start()
        try:
            await ami.wait_ready(30)
            uniqueid = f"t-{uuid.uuid4().hex[:16]}"
            result = await ami.originate(
                "Local/s@hotline-test-caller", context="hotline-inbound", exten="10000",
                caller_id='"Idle" <13800000099>', channel_id=uniqueid, other_channel_id=uniqueid + "-c",
                variables={"__CALLER_KEYS": "", "__CALLER_WAIT": "1", "__CALLER_HOLD": str(hold)})
            assert result.success, result.reason
            return uniqueid
        finally:
            await ami.close()

    async def hang_up(self, uniqueid: str) -> None:
        """One call hangs up (found by uniqueid in the CLI's concise channel list)."""
        listing = await asyncio.to_thread(subprocess.run, [PBX, "rx", self.env["HOTLINE_PBX_NAME"],
                                          "core show channels concise"], capture_output=True, text=True,
                                          check=True, env=self.env)
        names = [line.split("!")[0] for line in listing.stdout.splitlines() if line.rstrip().endswith("!" + uniqueid)]
        assert names, listing.stdout
        await asyncio.to_thread(subprocess.run, [PBX, "rx", self.env["HOTLINE_PBX_NAME"],
                                f"channel request hangup {names[0]}"], capture_output=True, check=True, env=self.env)

    async def hang_up_test_callers(self) -> None:
        """Every channel of this instance hangs up (the Asterisk CLI; the hotline's AMI user may not)."""
        await asyncio.to_thread(subprocess.run, [PBX, "rx", self.env["HOTLINE_PBX_NAME"], "channel request hangup all"],
                                capture_output=True, check=True, env=self.env)


async def outcome(redis_url: str, uniqueid: str, timeout: float = 120) -> OutcomeRecord:
    client = Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                record = await OutcomeStore(client, Path("/nonexistent")).get(uniqueid)
            except (OSError, RedisError):
                record = None
            if record is not None:
                return record
            await asyncio.sleep(0.5)
    finally:
        await client.aclose()
    raise AssertionError(f"no outcome for {uniqueid}")


@pytest.fixture
async def serves(tmp_path: Path) -> AsyncIterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for serve in started:  # whatever a killed controller left behind: its Asterisk, its Redis
        if serve.process is not None and serve.process.returncode is None:
            serve.process.kill()
            await serve.process.wait()
    if started:
        env = started[0].env
        subprocess.run([PBX, "purge", env["HOTLINE_PBX_NAME"]], capture_output=True, check=False, env=env)
        subprocess.run(["redis-cli", "-p", env["HOTLINE_REDIS_PORT"], "shutdown", "nosave"], capture_output=True,
                       check=False)


async def test_sigterm_then_sigkill_and_restart_with_callers_in_the_menu(tmp_path: Path, serves: list[Serve]) -> None:
    # SIGTERM: new sessions refused, the one in progress drained (2 s) and cut off; the caller
    # goes on to the dialplan's fallback queue, and the outcome is kept while Asterisk stops.
    env = Serve.settings(tmp_path)
    first = Serve(env)
    serves.append(first)
    await first.start()
    cut_off = await first.call_idle_in_the_menu()
    await asyncio.sleep(6)  # in the main menu, waiting for a key
    started = time.monotonic()
    assert await first.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 60
    assert "Traceback" not in "".join(first.output)

    # SIGKILL: nothing is drained. Asterisk and Redis (started by the killed process) stay up;
    # the caller's AGI connection drops and the dialplan's fallback queues them.
    second = Serve(env)
    serves.append(second)
    await second.start()
    killed_mid_menu = await second.call_idle_in_the_menu(hold=600)  # hung up below, once a controller is back
    gone_while_down = await second.call_idle_in_the_menu(hold=600)  # hung up while no controller is up
    await asyncio.sleep(6)
    await second.stop(signal.SIGKILL)
    await asyncio.sleep(2)  # the AGI connections drop; both callers go on to the fallback queue
    await second.hang_up(gone_while_down)  # its hangup handler finds no controller: the dialplan journals it

    # Restarted: it takes over the running Asterisk and Redis; the caller's hangup handler reaches it.
    third = Serve(env)
    serves.append(third)
    await third.start()
    assert any("already running" in line for line in third.output), third.output
    await third.hang_up_test_callers()  # the caller, still waiting in the fallback queue, hangs up now
    record = await outcome(third.redis_url, killed_mid_menu, timeout=30)
    assert record.disposition in (Disposition.FALLBACK, Disposition.ABANDONED_QUEUE, Disposition.FAILED), record
    assert record.fallback_reason is not None and record.fallback_reason.startswith("dialplan:"), record
    # The call that ended with no controller up: the restarted one writes it from the dialplan's journal.
    journaled = await outcome(third.redis_url, gone_while_down, timeout=30)
    assert journaled.source == "dialplan", journaled
    assert journaled.disposition == Disposition.FALLBACK and journaled.fallback_reason is not None, journaled
    assert journaled.fallback_reason.startswith("dialplan:") and journaled.queue, journaled
    assert record.source == "finish", record
    earlier = await outcome(third.redis_url, cut_off, timeout=5)  # kept across the restart (AOF)
    assert earlier.fallback_reason is not None and earlier.fallback_reason.startswith("dialplan:"), earlier

    # Asterisk's books for the running instance: every call exactly one record.
    root = subprocess.run([PBX, "root"], capture_output=True, text=True, check=True).stdout.strip()
    instance = Path(root, "srv", "hotline", third.env["HOTLINE_PBX_NAME"])
    await asyncio.sleep(6)
    client = Redis.from_url(third.redis_url)
    try:
        report = await audit(read_cdr(cdr_file(instance).read_text()), client, now=time.time(), settle=5)
    finally:
        await client.aclose()
    assert report.checked >= 2 and report.mismatches == 0, (report.missing, report.duplicated)
    assert await third.stop(signal.SIGTERM) == 0
