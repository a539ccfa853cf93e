"""The newcomer's path, as separate processes: `hotline serve` brings up Redis, Asterisk and the
controller by itself; `hotline dial` places a real call; `hotline calls` and the web show it."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from ivr.app import Hotline
from ivr.config import SAMPLE_MENU
from ivr.menu.loader import load_menu
from routing.ami import AmiClient
from tests.conftest import free_port

pytestmark = pytest.mark.e2e
HOTLINE = [sys.executable, "-m", "ivr.cli"]


def test_check_reports_file_line_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nlanguages: [zh]\ndefault_language: zh\nstart: a\n"
                   "prompts: {p: {zh: hi}}\nnodes:\n  a: {type: route, skill: nope}\n")
    result = subprocess.run([*HOTLINE, "check", str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert f"{bad}:7:27: route to unknown skill 'nope'" in result.stderr
    ok = subprocess.run([*HOTLINE, "check", "ivr/samples/hotline-10000.yaml"], capture_output=True, text=True,
                        check=False)
    nodes = len(load_menu(SAMPLE_MENU).nodes)
    assert ok.returncode == 0 and f"ok ({nodes} nodes" in ok.stdout and "routing.yaml: ok (7 skills" in ok.stdout


async def test_wrong_ami_secret_is_refused_by_real_asterisk(hotline: Hotline) -> None:
    s = hotline.settings
    ami = AmiClient(s.ami_host, s.ami_port, s.ami_user, "not-the-secret", backoff_initial=0.2)
    await ami.start()
    with pytest.raises(TimeoutError):
        await ami.wait_ready(2)
    await ami.close()


async def test_quick_start_serve_dial_calls(tmp_path: Path) -> None:
    web_port = free_port()
    env = {
        **os.environ,
        "HOTLINE_STATE_DIR": str(tmp_path / "state"),
        "HOTLINE_AGI_PORT": str(free_port()),
        "HOTLINE_AMI_PORT": str(free_port()),
        "HOTLINE_WEB_PORT": str(web_port),
        "HOTLINE_REDIS_PORT": str(free_port()),
        "HOTLINE_SIP_PORT": str(free_port()),
        "HOTLINE_PBX_NAME": f"quickstart-{os.getpid()}",
        "HOTLINE_PBX_EPHEMERAL": "true",
    }
    serve = await asyncio.create_subprocess_exec(*HOTLINE, "serve", env=env, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.STDOUT)
    output: list[str] = []
    try:
        assert serve.stdout is not None
        async with asyncio.timeout(180):
            while True:
                line = (await serve.stdout.readline()).decode()
                assert line, "hotline serve exited:\n" + "".join(output)
                output.append(line)
                if line.startswith("hotline is up"):
                    break
        drain = asyncio.create_task(serve.stdout.read())

        # A second `serve` on the same settings refuses to start and leaves the first alone.
        second = await asyncio.create_subprocess_exec(*HOTLINE, "serve", env=env, stdout=asyncio.subprocess.PIPE,
                                                      stderr=asyncio.subprocess.STDOUT)
        second_output, _ = await asyncio.wait_for(second.communicate(), 60)
        assert second.returncode == 1, second_output.decode()
        assert b"another `hotline serve` running?" in second_output and b"Traceback" not in second_output

        started = time.monotonic()
        dial = await asyncio.create_subprocess_exec(
            *HOTLINE, "dial", "--from", "13800000003", "--keys", "1", "1", "1", "--json", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(dial.communicate(), 120)
        assert dial.returncode == 0, err.decode()
        record = json.loads(out)
        assert record["disposition"] == "self_served"
        assert record["menu_path"][-2:] == ["balance", "goodbye"]
        assert time.monotonic() - started < 90

        calls = await asyncio.create_subprocess_exec(*HOTLINE, "calls", "--json", env=env,
                                                     stdout=asyncio.subprocess.PIPE)
        listed, _ = await calls.communicate()
        lines = [json.loads(line) for line in listed.decode().splitlines()]
        assert [r["uniqueid"] for r in lines] == [record["uniqueid"]]

        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{web_port}/health") as response:
                health = await response.json()
                assert response.status == 200 and health["ami"] and health["redis"] and health["agi"]
            async with http.get(f"http://127.0.0.1:{web_port}/api/calls") as response:
                assert [r["uniqueid"] for r in await response.json()] == [record["uniqueid"]]
            async with http.get(f"http://127.0.0.1:{web_port}/api/live") as response:
                live = await response.json()
                assert live["ami"] and live["waiting"] == []
                assert {a["name"] for a in live["agents"]} == {"agent1001", "agent1002", "agent1003", "agent1004"}
                assert "hotline-general" in live["queues"]
    finally:
        if serve.returncode is None:
            serve.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(serve.wait(), 60)
            except TimeoutError:
                serve.kill()
    assert serve.returncode == 0
    rest = (await drain).decode()
    assert "Traceback" not in rest and " ERROR " not in rest, rest
    # The instance it started is gone again.
    status = subprocess.run(["asterisk/hotline-pbx", "status", env["HOTLINE_PBX_NAME"]], capture_output=True,
                            check=False)
    assert status.returncode != 0
    root = subprocess.run(["asterisk/hotline-pbx", "root"], capture_output=True, text=True, check=True).stdout.strip()
    assert not Path(root, "srv", "hotline", env["HOTLINE_PBX_NAME"]).exists()  # the throwaway instance is gone
