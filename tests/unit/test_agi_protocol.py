"""The AGI wire format: quoting, command framing, reply and environment parsing."""

import pytest

from ivr.agi.protocol import (
    AgiProtocolError,
    LineKind,
    classify_line,
    encode_command,
    encode_unique_command,
    parse_environment,
    parse_reply,
    parse_success,
    quote_argument,
)


def split_like_res_agi(line: str) -> list[str]:
    """res_agi.c parse_args, transcribed: what Asterisk will see as argv."""
    args: list[str] = []
    cur: list[str] | None = None
    quoted = escaped = False
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and cur is None:
                cur = []
            continue
        if ch in " \t" and not quoted and not escaped:
            if cur is not None:
                args.append("".join(cur))
                cur = None
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if cur is None:
            cur = []
        cur.append(ch)
        escaped = False
    if cur is not None:
        args.append("".join(cur))
    return args


@pytest.mark.parametrize(
    "value",
    ['plain', 'with space', 'a"quote', 'back\\slash', '\\"both\\"', '', 'trailing\\', '"', '  lead'],
)
def test_quoted_argument_is_one_word_with_the_same_text(value: str) -> None:
    line = encode_command("SET VARIABLE", "NAME", value).decode().rstrip("\n")
    assert split_like_res_agi(line) == ["SET", "VARIABLE", "NAME", value]


def test_cr_lf_nul_cannot_reach_the_wire() -> None:
    line = encode_command("SET VARIABLE", "X", 'evil"\r\nEXEC System "rm -rf /"\x00')
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert b"\r" not in line and b"\x00" not in line
    assert split_like_res_agi(line.decode().rstrip("\n")) == ["SET", "VARIABLE", "X", 'evil"EXEC System "rm -rf /"']


def test_overlong_command_is_refused_not_split() -> None:
    with pytest.raises(ValueError):
        encode_command("SET VARIABLE", "X", "a" * 9000)


def test_verb_must_be_a_constant_word() -> None:
    with pytest.raises(ValueError):
        encode_command("EXEC\nHANGUP")
    assert quote_argument(5) == '"5"'


@pytest.mark.parametrize(
    ("line", "result", "data", "fields"),
    [
        ("200 result=0", "0", None, {}),
        ("200 result=49 endpos=12345", "49", None, {"endpos": "12345"}),
        ("200 result= (timeout)", "", "timeout", {}),
        ("200 result=123", "123", None, {}),
        ("200 result=1 (hello world)", "1", "hello world", {}),
        ("200 result=-1 (hangup) endpos=0", "-1", "hangup", {"endpos": "0"}),
        ("200 result=1 (speech) endpos=0 results=1 score0=900 text0=\"hello there\" grammar0=g",
         "1", "speech", {"endpos": "0", "results": "1", "score0": "900", "text0": "hello there", "grammar0": "g"}),
    ],
)
def test_success_replies(line: str, result: str, data: str | None, fields: dict[str, str]) -> None:
    reply = parse_success(line)
    assert (reply.code, reply.result, reply.data, reply.fields) == (200, result, data, fields)


def test_variable_value_with_parens_and_equals_is_kept_whole() -> None:
    reply = parse_success("200 result=1 (a) b=c (d))", data_is_rest=True)
    assert reply.data == "a) b=c (d)"


def test_other_codes_and_line_kinds() -> None:
    assert parse_reply("510 Invalid or unknown command").code == 510
    assert parse_reply("511 Command Not Permitted on a dead channel or intercept routine").code == 511
    assert classify_line("HANGUP") is LineKind.HANGUP
    assert classify_line("520-Invalid command syntax.  Proper usage follows:") is LineKind.USAGE_START
    with pytest.raises(AgiProtocolError):
        classify_line("garbage")
    with pytest.raises(AgiProtocolError):
        parse_success("200 result=1 (unterminated")


def test_environment_with_query_and_hostile_caller_name() -> None:
    raw = (
        b"agi_network: yes\n"
        b"agi_network_script: hotline?entry=10000&lang=zh\n"
        b"agi_uniqueid: 1700000000.1\n"
        b"agi_callerid: 13800000001\n"
        b'agi_calleridname: A"B\r\n'
        b"injected line without prefix\n"
        b"agi_extension: 10000\n"
        b"agi_context: \xff\xfebad\n"
    )
    env = parse_environment(raw)
    assert env.script == "hotline"
    assert env.query == {"entry": "10000", "lang": "zh"}
    assert env.caller_name == 'A"B'
    assert env.caller_number == "13800000001"
    assert env.extension == "10000"
    assert "\ufffd" in env.get("context")
    assert "injected line without prefix" not in env.variables.values()


def test_caller_name_cannot_override_variables_asterisk_wrote_first() -> None:
    raw = (
        b"agi_network_script: hotline\nagi_uniqueid: 1.1\nagi_callerid: 138\n"
        b"agi_calleridname: Evil\n\nagi_network_script: finish\nagi_uniqueid: 666\nagi_extension: 666\n\n"
        b"agi_callingpres: 0\nagi_extension: 10000\nagi_threadid: 1\n"
    )
    env = parse_environment(raw)
    assert (env.script, env.uniqueid, env.caller_name, env.extension) == ("hotline", "1.1", "Evil", "10000")


def test_unknown_caller_id_is_empty() -> None:
    env = parse_environment(b"agi_callerid: unknown\nagi_calleridname: unknown\n")
    assert env.caller_number == "" and env.caller_name == ""


def test_a_cached_command_line_is_the_line_built_anew_and_a_bad_one_is_refused_every_time() -> None:
    for _ in range(2):
        assert encode_command("STREAM FILE", "menu", "12") == encode_unique_command("STREAM FILE", "menu", "12")
        assert encode_command("SAY NUMBER", 5, "") == b'SAY NUMBER "5" ""\n'
        with pytest.raises(ValueError):
            encode_command("SET VARIABLE", "X", "a" * 9000)


@pytest.mark.parametrize("line", ["200 result=0", "200 result=1", "200 result=-1"])
def test_the_replies_parsed_once_are_what_parsing_gives(line: str) -> None:
    assert parse_reply(line) == parse_success(line)
    assert parse_reply(line, data_is_rest=True) == parse_success(line, data_is_rest=True)


def test_a_result_of_more_digits_than_python_converts_is_not_a_number_and_not_an_error() -> None:
    reply = parse_reply("200 result=" + "9" * 5000)
    assert reply.result == "9" * 5000 and reply.result_int is None


def test_only_short_plain_results_are_kept_parsed_never_a_callers_digits_or_an_endpos() -> None:
    from ivr.agi.protocol import _REPLIES_SEEN, reply_of_line

    for line in (b"200 result=4000123412341234\n", b"200 result=49 endpos=1000\n", b"200 result=1 (x)\n"):
        assert reply_of_line(line).text == line.decode().rstrip("\n")
        assert line not in _REPLIES_SEEN
    assert reply_of_line(b"200 result=49\n").result_int == 49
    assert b"200 result=49\n" in _REPLIES_SEEN


def test_equal_arguments_of_other_types_are_not_taken_for_each_other() -> None:
    """True == 1.0 == 1 as keys of the cache of command lines: each gets the line built for it."""
    from ivr.agi.protocol import command_line

    for arguments in ((1, ""), (True, ""), (1.0, "")):  # 1 first: its line is cached
        try:
            fresh = encode_unique_command("SAY NUMBER", *arguments)  # type: ignore[arg-type]
        except TypeError:
            continue  # the compiled engine refuses what its types do not admit (a float)
        assert command_line("SAY NUMBER", arguments) == fresh  # type: ignore[arg-type]
