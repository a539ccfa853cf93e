"""Caller strings (caller ID number and name, keys, speech text) that try to break out: the exact
bytes each one becomes on the AGI and AMI wires, in a dial string and in a log line. The
end-to-end versions (real Asterisk, raw CR/LF in the AGI environment) are in tests/e2e/test_calls.py.
"""

import asyncio
import contextlib
import logging

import pytest

from ivr.agi.protocol import encode_command, parse_environment
from routing.ami import AmiClient
from routing.customers import mask_number, normalize_number
from tests.unit.test_agi_protocol import split_like_res_agi
from tests.unit.test_ami import FakeAmi, fake_ami, wait_for  # noqa: F401 (fixture)

# name -> (what the caller sent, the exact AGI line it becomes as a SET VARIABLE value,
#          the AMI CallerID value Asterisk receives, the digits a dial string may use)
HOSTILE: dict[str, tuple[str, bytes, str, str]] = {
    "quotes": ('"Evil" <1>', b'SET VARIABLE "V" "\\"Evil\\" <1>"\n', '"Evil" <1>', "1"),
    "backslashes": ('a\\"b\\', b'SET VARIABLE "V" "a\\\\\\"b\\\\"\n', 'a\\"b\\', ""),
    "CR/LF with a command": ('x\r\nEXEC System "id"\r\n', b'SET VARIABLE "V" "xEXEC System \\"id\\""\n',
                             'xEXEC System "id"', ""),
    "NUL": ("a\x00b", b'SET VARIABLE "V" "ab"\n', "ab", ""),
    "a second dial target": ("138&SIP/evil@attacker", b'SET VARIABLE "V" "138&SIP/evil@attacker"\n',
                             "138&SIP/evil@attacker", "138"),
    "markup": ("<script>alert(1)</script>", b'SET VARIABLE "V" "<script>alert(1)</script>"\n',
               "<script>alert(1)</script>", "1"),
    "AMI headers": ("1\r\nAction: Command\r\nCommand: core stop now\r\n\r\n",
                    b'SET VARIABLE "V" "1Action: CommandCommand: core stop now"\n',
                    "1Action: CommandCommand: core stop now", "1"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_agi_line_is_exactly_one_quoted_word(name: str) -> None:
    sent, wire, _, _ = HOSTILE[name]
    line = encode_command("SET VARIABLE", "V", sent)
    assert line == wire
    assert line.count(b"\n") == 1
    assert split_like_res_agi(line.decode().rstrip("\n"))[3] == sent.replace("\r", "").replace("\n", "").replace(
        "\x00", "")


def test_a_long_caller_string_is_refused_whole_not_split_into_a_second_command() -> None:
    with pytest.raises(ValueError):
        encode_command("SET VARIABLE", "V", "A" * 8200)
    assert encode_command("SET VARIABLE", "V", "A" * 4000).count(b"\n") == 1


@pytest.mark.parametrize("name", list(HOSTILE))
def test_dial_strings_take_digits_only(name: str) -> None:
    sent, _, _, digits = HOSTILE[name]
    assert normalize_number(sent) == digits
    assert "PJSIP/{number}@operator".replace("{number}", normalize_number(sent)).count("/") == 1


@pytest.mark.parametrize("name", list(HOSTILE))
def test_log_lines_show_no_caller_control_bytes(name: str, caplog: pytest.LogCaptureFixture) -> None:
    sent = HOSTILE[name][0]
    with caplog.at_level(logging.INFO):
        logging.getLogger("hotline.test").info("call from %s", mask_number(sent))
    assert len(caplog.records) == 1 and "\n" not in caplog.text.rstrip("\n") and "\r" not in caplog.text
    assert "\x00" not in caplog.text


def test_caller_name_in_the_agi_environment_stays_one_value() -> None:
    raw = b"agi_network_script: hotline\nagi_uniqueid: 1.1\nagi_callerid: 138&SIP/x\nagi_calleridname: <script>\\\n\n"
    env = parse_environment(raw)
    assert (env.caller_number, env.caller_name, env.script) == ("138&SIP/x", "<script>\\", "hotline")


async def test_ami_originate_carries_each_hostile_value_as_one_header(fake_ami: FakeAmi) -> None:  # noqa: F811
    ami = AmiClient("127.0.0.1", fake_ami.port, "hotline", fake_ami.secret)
    await ami.start()
    try:
        await ami.wait_ready(2)
        for name, (sent, _, received, _) in HOSTILE.items():
            fake_ami.actions.clear()
            with contextlib.suppress(TimeoutError):  # the fake never answers an Originate: the bytes matter
                async with asyncio.timeout(0.3):
                    await ami.originate("Local/s@x", context="c", exten="1", caller_id=sent, wait=False,
                                        variables={"__CALLER_NAME": sent})
            await wait_for(lambda: any(a.get("Action") == "Originate" for a in fake_ami.actions))
            (originate,) = [a for a in fake_ami.actions if a.get("Action") == "Originate"]
            assert originate["CallerID"] == received, name
            assert originate["Variable"] == f"__CALLER_NAME={received}", name
            assert not any(a.get("Action") in ("Command", "Logoff") for a in fake_ami.actions), name
    finally:
        await ami.close()
