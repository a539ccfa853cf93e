"""Fuzzing (hypothesis) of what reads untrusted text: the AGI environment and reply parsers, the
AGI and AMI encoders (hostile caller strings), the AMI reader across TCP chunking, and the YAML
loaders. Bounded: a fixed number of examples each, no deadline, so CI time stays predictable."""

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from panoramisk.actions import Action
from panoramisk.message import Message

from ivr.agi.protocol import (
    AgiProtocolError,
    LineKind,
    classify_line,
    encode_command,
    parse_environment,
    parse_reply,
)
from ivr.menu.loader import parse_menu_text
from ivr.yamldoc import ConfigError
from routing.ami import _Protocol, clean_action
from routing.rules import parse_rules_text

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SAMPLE_MENU = (Path(__file__).resolve().parents[2] / "ivr" / "samples" / "hotline-10000.yaml").read_text()
SAMPLE_RULES = (Path(__file__).resolve().parents[2] / "routing" / "samples" / "routing.yaml").read_text()

# Text the way a hostile caller ID or a broken peer writes it: quotes, backslashes, CR/LF, NUL, any
# Unicode, and the AGI/AMI syntax itself.
hostile = st.text(alphabet=st.one_of(st.sampled_from('"\\\r\n\x00 :=()&<>/;,|'), st.characters()), max_size=200)


def res_agi_words(line: str) -> list[str]:
    """How Asterisk's res_agi splits a command line into words: quotes group, a backslash escapes
    the next character (a reference of its parse_args, to check what our encoding means to it)."""
    words: list[str] = []
    current, quoted, escaped, started = [], False, False, False
    for ch in line.rstrip("\n"):
        if escaped:
            current.append(ch)
            escaped, started = False, True
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted, started = not quoted, True
        elif ch in " \t" and not quoted:
            if started:
                words.append("".join(current))
                current, started = [], False
        else:
            current.append(ch)
            started = True
    if started:
        words.append("".join(current))
    return words


@FUZZ
@given(hostile, hostile)
def test_any_argument_is_one_word_on_one_line(name: str, value: str) -> None:
    try:
        line = encode_command("SET VARIABLE", name, value).decode("utf-8")
    except ValueError:
        return  # over Asterisk's line buffer: refused, never truncated
    assert line.endswith("\n") and line.count("\n") == 1 and "\r" not in line and "\x00" not in line
    stripped = [s.replace("\r", "").replace("\n", "").replace("\x00", "") for s in (name, value)]
    assert res_agi_words(line) == ["SET", "VARIABLE", *stripped]


@FUZZ
@given(st.binary(max_size=2000))
def test_any_environment_block_parses(raw: bytes) -> None:
    environment = parse_environment(raw)
    for value in (environment.uniqueid, environment.caller_number, environment.caller_name):
        assert "\n" not in value


_ENV_NAMES = ["uniqueid", "network_script", "callerid", "calleridname", "extension", "context", "threadid", ""]
_env_lines = st.lists(st.one_of(
    st.builds(lambda name, sep, value: f"agi_{name}{sep}{value}", st.sampled_from(_ENV_NAMES),
              st.sampled_from([": ", ":", ":  ", ": \r"]), hostile),
    hostile), max_size=12)
_bad_utf8 = st.sampled_from([b"\xe4\xbd", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf0\x9f\x98", b"\x80\x80"])


@FUZZ
@given(_env_lines, st.sampled_from(["\n", "\r\n"]), st.lists(st.tuples(st.integers(0, 400), _bad_utf8), max_size=4))
def test_a_variable_asked_for_is_the_one_of_the_whole_block(lines: list[str], newline: str,
                                                            broken: list[tuple[int, bytes]]) -> None:
    """Variables are searched for as they are asked (AgiEnvironment.get); the whole block split at
    once (AgiEnvironment.variables) is the reference: first line or last, CRs, colons, duplicates,
    and bytes that are not UTF-8 anywhere in it."""
    raw = (newline.join(lines) + "\n\n").encode("utf-8", errors="surrogatepass")
    for at, bad in broken:
        raw = raw[:at] + bad + raw[at:]
    everything = parse_environment(raw).variables
    environment = parse_environment(raw)
    for name in [*_ENV_NAMES, *everything]:
        if name.isascii() and "\n" not in name:  # Asterisk's names are ASCII
            assert environment.get(name, "<none>") == everything.get(name, "<none>"), name


@FUZZ
@given(st.one_of(hostile, st.builds(lambda rest: "200 result=" + rest, hostile)))
def test_any_reply_line_parses_or_is_a_protocol_error(line: str) -> None:
    try:
        if classify_line(line) is LineKind.REPLY:
            reply = parse_reply(line, data_is_rest=True)
            assert reply.text == line
    except AgiProtocolError:
        pass


@FUZZ
@given(st.dictionaries(hostile, hostile, max_size=6))
def test_an_ami_action_never_carries_an_injected_header(headers: dict[str, str]) -> None:
    action = clean_action({"Action": "Setvar", **headers})
    wire = str(Action(action))
    lines = wire.split("\r\n")
    assert lines[-2:] == ["", ""]  # one blank line: the end of this action, and only here
    body = lines[:-2]
    assert "" not in body and all("\n" not in line and "\r" not in line for line in body)
    # AMI header names are case-insensitive (panoramisk keeps one of "T0" and "t0"): count them so.
    keys = {k.lower() for k in action if k.lower() not in ("actionid",)}
    assert len([line for line in body if not line.lower().startswith("actionid:")]) == len(keys)


class _Dispatcher:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def dispatch(self, message: Message) -> list[str]:
        self.events.append(dict(message))
        return []


class _Transport:
    def write(self, data: bytes) -> None:
        pass


def _read(chunks: list[bytes]) -> list[dict[str, Any]]:
    protocol = _Protocol()
    protocol.connection_made(_Transport())
    protocol.factory = _Dispatcher()
    protocol.encoding = "utf-8"
    for chunk in chunks:
        protocol.data_received(chunk)
    return protocol.factory.events  # type: ignore[no-any-return]


event_text = st.builds(
    lambda name, value: f"Event: {name}\r\nUniqueid: 1.1\r\nCallerIDName: {value}\r\n\r\n",
    st.text(alphabet=st.characters(blacklist_characters="\r\n:", blacklist_categories=("Cs",)), min_size=1,
            max_size=20),
    st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=40),
)


@FUZZ
@given(st.lists(event_text, min_size=1, max_size=5), st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_ami_events_read_the_same_however_tcp_splits_them(events: list[str], cuts: list[int]) -> None:
    """Multi-byte UTF-8 split by TCP must not lose or change characters (a panoramisk defect)."""
    stream = "".join(events).encode("utf-8")
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert _read(chunks) == _read([stream])
    assert len(_read([stream])) == len(events)


@FUZZ
@given(st.binary(max_size=3000))
def test_garbage_from_an_ami_peer_never_raises(raw: bytes) -> None:
    _read([raw[: len(raw) // 2], raw[len(raw) // 2:]])


@FUZZ
@given(hostile)
def test_any_text_as_a_menu_is_a_menu_or_a_config_error(text: str) -> None:
    try:
        parse_menu_text(text)
    except ConfigError:
        pass


@FUZZ
@given(st.integers(min_value=0, max_value=len(SAMPLE_MENU)), st.integers(min_value=0, max_value=200), hostile)
def test_a_damaged_sample_menu_is_a_menu_or_a_config_error(at: int, cut: int, inserted: str) -> None:
    try:
        parse_menu_text(SAMPLE_MENU[:at] + inserted + SAMPLE_MENU[at + cut:])
    except ConfigError as exc:
        assert all(problem.line >= 1 for problem in exc.problems)  # every problem points somewhere


@FUZZ
@given(st.integers(min_value=0, max_value=len(SAMPLE_RULES)), st.integers(min_value=0, max_value=200), hostile)
def test_damaged_routing_rules_are_rules_or_a_config_error(at: int, cut: int, inserted: str) -> None:
    try:
        parse_rules_text(SAMPLE_RULES[:at] + inserted + SAMPLE_RULES[at + cut:])
    except ConfigError:
        pass


@FUZZ
@given(st.dictionaries(st.sampled_from(["HOTLINE_A", "HOTLINE_B", "CHANNEL(language)", "X1"]),
                       st.text(alphabet=st.sampled_from(list("ab1.:/+-_=, \"\\$(){}|")), max_size=8),
                       min_size=2))
def test_an_mset_argument_sets_exactly_the_variables_asked(texts: dict[str, str]) -> None:
    from ivr.agi.channel import mset_argument

    argument = mset_argument(texts)
    if argument is not None:  # MSet splits on commas, then each pair at its first "=": the same values back
        assert dict(pair.split("=", 1) for pair in argument.split(",")) == texts
        assert not any(set(value) & set('"\\$(){}| ,=') for value in texts.values())  # nothing read twice
