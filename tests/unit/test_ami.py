"""The AMI wrapper: sanitising, login check, ping watchdog, backoff, close, guarded handlers.

A fake AMI peer is used for faults a real Asterisk cannot produce on demand (a peer that stops
answering pings, chunked UTF-8); tests/e2e covers the wrapper against the real one.
"""

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from routing.ami import AmiClient, clean_action


def test_cr_lf_are_stripped_from_every_value_and_originate_is_async() -> None:
    action = clean_action({"Action": "Originate", "CallerID": '"x"\r\nAction: Command\r\nCommand: core stop now',
                           "Variable": ["A=1\n", "B=2"], "Async": "false"})
    assert action["CallerID"] == '"x"Action: CommandCommand: core stop now'
    assert action["Variable"] == ["A=1", "B=2"]
    assert action["Async"] == "true"


@dataclass
class FakeAmi:
    """A minimal AMI server: answers Login (per `secret`) and Ping (unless `answer_pings` is off)."""

    secret: str = "s3cret"
    answer_pings: bool = True
    booted: bool = True  # send FullyBooted after a login, as a booted Asterisk does
    connections: int = 0
    actions: list[dict[str, str]] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        try:
            while True:
                block = await reader.readuntil(b"\r\n\r\n")
                fields = dict(line.split(": ", 1) for line in block.decode().strip().split("\r\n") if ": " in line)
                self.actions.append(fields)
                action_id = fields.get("ActionID", "")
                name = fields.get("Action", "").lower()
                if name == "login":
                    ok = fields.get("Secret") == self.secret
                    writer.write(f"Response: {'Success' if ok else 'Error'}\r\nActionID: {action_id}\r\n"
                                 f"Message: {'Authentication accepted' if ok else 'Authentication failed'}\r\n\r\n"
                                 .encode())
                    if ok and self.booted:
                        writer.write(b"Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n")
                elif name == "ping" and self.answer_pings:
                    writer.write(f"Response: Success\r\nActionID: {action_id}\r\nPing: Pong\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    def emit(self, raw: bytes) -> None:
        for writer in self.writers:
            if not writer.is_closing():
                writer.write(raw)


@pytest.fixture
async def fake_ami() -> AsyncIterator[FakeAmi]:
    fake = FakeAmi()
    fake.server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    yield fake
    for writer in fake.writers:
        writer.close()
    fake.server.close()


def client(fake: FakeAmi, secret: str = "s3cret", **kw: float) -> AmiClient:
    return AmiClient("127.0.0.1", fake.port, "hotline", secret, backoff_initial=0.05, backoff_max=0.2, **kw)


async def wait_for(predicate, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_refused_login_never_becomes_ready_and_retries_with_backoff(fake_ami: FakeAmi) -> None:
    ami = client(fake_ami, secret="wrong")
    await ami.start()
    await wait_for(lambda: fake_ami.connections >= 3)
    assert not ami.ready
    await ami.close()


async def test_unanswered_ping_forces_a_reconnect(fake_ami: FakeAmi) -> None:
    ami = client(fake_ami, ping_interval=0.1, ping_timeout=0.1)
    await ami.start()
    await ami.wait_ready(2)
    fake_ami.answer_pings = False
    await wait_for(lambda: fake_ami.connections >= 2)
    fake_ami.answer_pings = True
    await ami.wait_ready(2)
    assert ami.connections >= 2
    await ami.close()


async def test_not_ready_before_asterisk_says_fully_booted(fake_ami: FakeAmi) -> None:
    fake_ami.booted = False
    ami = client(fake_ami, boot_timeout=0.2)
    await ami.start()
    await wait_for(lambda: fake_ami.connections >= 2)  # logged in, no FullyBooted: retried
    assert not ami.ready
    fake_ami.booted = True
    await ami.wait_ready(3)
    await ami.close()


async def test_close_stops_reconnecting(fake_ami: FakeAmi) -> None:
    ami = client(fake_ami)
    await ami.start()
    await ami.wait_ready(2)
    await ami.close()
    count = fake_ami.connections
    await asyncio.sleep(0.5)
    assert fake_ami.connections == count
    assert ami.state == "closed"


async def test_a_failing_handler_does_not_drop_events_and_utf8_split_survives(fake_ami: FakeAmi) -> None:
    ami = client(fake_ami)
    seen: list[str] = []

    def broken(event: object) -> None:
        raise RuntimeError("handler bug")

    async def good(event: dict[str, str]) -> None:
        seen.append(event["CallerIDName"])

    ami.on("Newchannel", broken)
    ami.on("Newchannel", good)
    await ami.start()
    await ami.wait_ready(2)
    name = "张三".encode()
    first = b"Event: Newchannel\r\nCallerIDName: " + name[:2]
    fake_ami.emit(first)
    await asyncio.sleep(0.05)  # the character arrives split across two TCP chunks
    fake_ami.emit(name[2:] + b"\r\n\r\nEvent: Newchannel\r\nCallerIDName: b\r\n\r\n")
    await wait_for(lambda: len(seen) == 2)
    assert seen == ["张三", "b"]
    await ami.close()


async def test_action_values_reach_the_wire_without_cr_lf(fake_ami: FakeAmi) -> None:
    ami = client(fake_ami)
    await ami.start()
    await ami.wait_ready(2)
    with pytest.raises(TimeoutError):  # the fake does not answer QueueAdd; only the bytes matter
        await ami.action({"Action": "QueueAdd", "Queue": "q\r\nAction: Logoff", "Interface": "Local/1@x"},
                         timeout=0.2)
    added = [a for a in fake_ami.actions if a.get("Action") == "QueueAdd"]
    assert added and added[0]["Queue"] == "qAction: Logoff"
    assert not any(a.get("Action") == "Logoff" for a in fake_ami.actions)
    await ami.close()


async def test_ami_over_tls_verifies_the_server_and_logs_in(tmp_path: Path) -> None:
    """The TLS option (Asterisk's manager.conf tlsenable): the client verifies the certificate
    against the configured CA, and a server it cannot verify gets no login (so no secret)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=pbx",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    fake = FakeAmi()
    fake.server = await asyncio.start_server(fake.handle, "127.0.0.1", 0, ssl=server_side)
    try:
        trusted = AmiClient("127.0.0.1", fake.port, "hotline", "s3cret", backoff_initial=0.05, backoff_max=0.2,
                            tls=ssl.create_default_context(cafile=str(cert)))
        await trusted.start()
        await trusted.wait_ready(5)
        assert fake.actions[0]["Action"] == "Login"
        await trusted.close()

        logins = len(fake.actions)
        untrusted = AmiClient("127.0.0.1", fake.port, "hotline", "s3cret", backoff_initial=0.05, backoff_max=0.2,
                              tls=ssl.create_default_context())  # the system CAs do not know this PBX
        await untrusted.start()
        await asyncio.sleep(0.5)
        assert not untrusted.ready and len(fake.actions) == logins  # the secret was never sent
        await untrusted.close()
    finally:
        for writer in fake.writers:
            writer.close()
        fake.server.close()


RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "ami_wire" / "queue_call.bin"


def recorded_blocks() -> list[str]:
    """Asterisk 22's AMI stream during a test call: login, FullyBooted, channel events, the call
    joining and abandoning hotline-general, QueueStatus's list, a Command, a Ping."""
    return [b.strip() for b in RECORDED.read_bytes().decode().split("\r\n\r\n") if b.strip()]


def test_parse_message_gives_what_panoramisk_gives_on_recorded_wire() -> None:
    from panoramisk.message import Message

    from routing.ami import parse_message

    blocks = [
        *recorded_blocks(),
        "Response: Follows\r\nActionID: c1\r\nPrivilege: Command\r\nAsterisk 22\r\n--END COMMAND--",
        "Response: Success\r\nActionID: a1\r\nResult: %22quoted%20value%22",
        "no headers here", "Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: x",
    ]
    assert any("ChanVariable: HOTLINE_CLASS=public" in b for b in blocks)  # a repeated header is in there
    for block in blocks:
        ours, theirs = parse_message(block), Message.from_line(block)
        if theirs is None:
            assert ours is None, block
            continue
        assert ours is not None, block
        assert dict(ours.items()) == dict(theirs.items()), block
        assert (ours.id, ours.action_id, ours.success, "Event" in ours, ours.get("uniqueID"), ours.content) == (
            theirs.id, theirs.action_id, theirs.success, "Event" in theirs, theirs.get("uniqueID"), theirs.content)
    join = parse_message(next(b for b in blocks if b.startswith("Event: QueueCallerJoin")))
    assert join is not None and join.get("ChanVariable") == [
        "HOTLINE_CLASS=public", "HOTLINE_PRIORITY=1", f"HOTLINE_QUEUED_AT={join.get('ChanVariable')[2].split('=')[1]}"]
    assert float(join["Timestamp"]) > 1.7e9  # manager.conf's timestampevents


async def test_recorded_wire_in_any_chunking_gives_the_same_events(fake_ami: FakeAmi) -> None:
    import random

    wire = RECORDED.read_bytes()
    _, _, stream = wire.partition(b"Event: FullyBooted")  # the fake sends its own greeting and login reply
    stream = b"Event: FullyBooted" + stream
    # Every event, QueueStatus's list items too: none of their ActionIDs is this client's.
    expected = [b.split("\r\n", 1)[0].split(": ", 1)[1] for b in recorded_blocks() if b.startswith("Event: ")]
    ami = client(fake_ami)
    seen: list[str] = []
    def asterisks(event: dict[str, str]) -> None:
        if not str(event.get("Event")).startswith("Hotline"):  # our own (connected) may come at any time
            seen.append(str(event.get("Event")))

    ami.on("*", asterisks)
    await ami.start()
    await ami.wait_ready(2)
    await wait_for(lambda: seen == ["FullyBooted"])  # the fake's own, at login
    seen.clear()
    rng = random.Random(3)
    position = 0
    while position < len(stream):  # 1 to 200 bytes at a time, splitting headers, lines and CR/LF pairs
        size = rng.randint(1, 200)
        fake_ami.emit(stream[position:position + size])
        position += size
        await asyncio.sleep(0)
    await wait_for(lambda: len(seen) >= len(expected))
    await asyncio.sleep(0.05)
    assert seen == expected, (seen, expected)
    await ami.close()
