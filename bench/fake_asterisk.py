"""Asterisk's side of FastAGI, for load: scripted callers that answer every command at once.

Used by the load test (tests/e2e/test_load.py) and the AGI engine benchmark. One ``run_session``
is one call: the ``agi_*`` environment block, then a reply to each command the controller sends,
the way res_agi would reply with no audio to wait for (prompts "play" in zero time). Keys are
given out one by one to the commands that read digits. The peer measures the controller's turn:
the time from its reply to the controller's next command.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import time
from dataclasses import dataclass, field

# What a dead-air menu wait returns when the script has no key left: Asterisk's "timeout".
NO_KEY = b"200 result=0\n"
DIGIT_READERS = ("STREAM FILE", "WAIT FOR DIGIT", "GET DATA", "GET OPTION", "SAY DIGITS", "SAY NUMBER")


@dataclass
class CallScript:
    keys: str = ""  # pressed one per digit-reading command (a prompt with them as escape digits)
    variables: dict[str, str] = field(default_factory=dict)  # GET VARIABLE answers
    caller: str = "13800000000"
    caller_name: str = "Load"
    network_script: str = "hotline"


@dataclass
class SessionResult:
    uniqueid: str
    commands: int = 0
    set_variables: dict[str, str] = field(default_factory=dict)
    turns: list[float] = field(default_factory=list)  # seconds: our reply -> the controller's next command
    seconds: float = 0.0
    error: str | None = None


def environment(uniqueid: str, script: CallScript) -> bytes:
    """The block Asterisk sends first; caller ID raw, as res_agi writes it."""
    lines = {
        "agi_network": "yes", "agi_network_script": script.network_script, "agi_request": "agi://127.0.0.1/hotline",
        "agi_channel": f"Local/s@load-{uniqueid};1", "agi_language": "en", "agi_type": "Local",
        "agi_uniqueid": uniqueid, "agi_version": "22.10.1", "agi_callerid": script.caller,
        "agi_calleridname": script.caller_name, "agi_callingpres": "0", "agi_dnid": "unknown",
        "agi_rdnis": "unknown", "agi_context": "hotline-inbound", "agi_extension": "10000", "agi_priority": "4",
        "agi_enhanced": "0.0", "agi_accountcode": "", "agi_threadid": "140000000000000",
    }
    return "".join(f"{k}: {v}\n" for k, v in lines.items()).encode() + b"\n"


class Replier:
    """Replies to one session's commands from its script."""

    def __init__(self, script: CallScript, result: SessionResult) -> None:
        self._keys = list(script.keys)
        self._variables = script.variables
        self._result = result

    def _next_key(self, allowed: str | None = None) -> str | None:
        if self._keys and (allowed is None or self._keys[0] in allowed):
            return self._keys.pop(0)
        return None

    def reply(self, line: str) -> bytes:
        if line.startswith("GET FULL VARIABLE"):
            expression = shlex.split(line)[3]
            names = re.findall(r"\$\{CSV_QUOTE\(\$\{(\w+)\}\)\}", expression)
            if names:  # several variables at once, as CSV_QUOTE writes them
                values = ",".join('"' + self._variables.get(n, "").replace('"', '""') + '"' for n in names)
                return f"200 result=1 ({values})\n".encode()
            return f"200 result=1 ({expression})\n".encode()  # the session's sync nonce, echoed
        if line.startswith("GET VARIABLE"):
            value = self._variables.get(shlex.split(line)[2])
            return b"200 result=0\n" if value is None else f"200 result=1 ({value})\n".encode()
        if line.startswith("SET VARIABLE"):
            words = shlex.split(line)
            self._result.set_variables[words[2]] = words[3] if len(words) > 3 else ""
            return b"200 result=1\n"
        if line.startswith(('EXEC "MSet" ', "EXEC MSet ")):  # Channel.set_variables: plain names and values
            for pair in shlex.split(line)[2].split(","):
                name, _, value = pair.partition("=")
                self._result.set_variables[name] = value
            return b"200 result=0\n"
        if line.startswith(DIGIT_READERS):
            return self._digits(line)
        if line.startswith("CHANNEL STATUS"):
            return b"200 result=6\n"
        if line.startswith("RECORD FILE"):
            return b"200 result=0 (timeout) endpos=8000\n"
        return b"200 result=0\n"  # ANSWER, VERBOSE, EXEC, SAY DATE, HANGUP, ...

    def _digits(self, line: str) -> bytes:
        words = shlex.split(line)
        if line.startswith("GET DATA"):  # GET DATA file [timeout [maxdigits]]: the keys up to '#'
            most = int(words[4]) if len(words) > 4 and words[4].isdigit() else 1024
            taken = ""
            while len(taken) < most and (key := self._next_key()) is not None and key != "#":
                taken += key
            return f"200 result={taken}\n".encode() if taken else b"200 result= (timeout)\n"
        if line.startswith("WAIT FOR DIGIT"):
            key = self._next_key()
        else:  # a prompt: interrupted only by a key among its escape digits
            escape = words[3] if len(words) > 3 else ""
            key = self._next_key(escape) if escape else None
        if key is None:
            return b"200 result=0 endpos=8000\n" if not line.startswith("WAIT FOR DIGIT") else NO_KEY
        return f"200 result={ord(key)} endpos=1000\n".encode()


async def run_session(host: str, port: int, uniqueid: str, script: CallScript, *,
                      timeout: float = 60.0, think: float = 0.0) -> SessionResult:
    """One call from connect to the controller's close. ``think``: seconds before each reply
    (Asterisk playing a short prompt), so that many calls are in flight at once without every
    one of them asking for the controller's attention at the same instant."""
    result = SessionResult(uniqueid)
    replier = Replier(script, result)
    started = time.perf_counter()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(environment(uniqueid, script))
            replied = time.perf_counter()
            while True:
                raw = await reader.readline()
                if not raw:
                    break  # the controller ended the session
                result.turns.append(time.perf_counter() - replied)
                result.commands += 1
                reply = replier.reply(raw.decode("utf-8", "replace").rstrip("\n"))
                if think:
                    await asyncio.sleep(think)
                writer.write(reply)
                replied = time.perf_counter()
    except (TimeoutError, OSError, ValueError, IndexError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.close()
    result.seconds = time.perf_counter() - started
    return result


async def _calls(port: int, ids: list[str], keys: str, prefix: str, rate: float, think: float) -> list[SessionResult]:
    async def one(n: int, uniqueid: str) -> SessionResult:
        await asyncio.sleep(n / rate)
        return await run_session("127.0.0.1", port, uniqueid, CallScript(keys=keys, caller=f"{prefix}{n:07d}"),
                                 think=think)

    return await asyncio.gather(*(one(n, u) for n, u in enumerate(ids)))


def main() -> None:
    """``python -m bench.fake_asterisk PORT KEYS PREFIX RATE THINK OUT_JSON UNIQUEID...``: calls
    from a process of their own (the load test's peer), results to OUT_JSON."""
    import json
    import sys
    from dataclasses import asdict
    from pathlib import Path

    port, keys, prefix, rate, think, out = sys.argv[1:7]
    import uvloop  # the peer is the load generator: it must cost less than what it measures

    results = uvloop.run(_calls(int(port), sys.argv[7:], keys, prefix, float(rate), float(think)))
    Path(out).write_text(json.dumps([asdict(r) for r in results]))


if __name__ == "__main__":
    main()
