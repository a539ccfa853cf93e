"""The FastAGI wire format, and nothing else.

This is the only module that knows how AGI text looks: how the environment block is framed, how
a command line is quoted, and how Asterisk's replies are parsed. Everything above it speaks in
typed values. The rules mirror res_agi.c (Asterisk 22):

* the environment is ``agi_name: value`` lines ended by an empty line; caller name and number are
  written raw, so they cannot be trusted to be well formed;
* a command is one ``\\n``-terminated line read into an 8192-byte buffer; arguments are split on
  blanks, ``"`` toggles quoting and ``\\`` escapes the next character;
* a reply is ``200 result=N [(data)] [key=value ...]``, ``510 ...``, ``511 ...``, a ``520-`` block
  ending with ``520 End of proper usage.``, and, unless AGISIGHUP=no, an unsolicited ``HANGUP``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType
from urllib.parse import parse_qsl, urlsplit

# Asterisk reads a command into an 8192-byte buffer; a longer line spills into a second command.
MAX_COMMAND_BYTES = 8000
# An honest environment block is about 1 KiB; anything near this cap is hostile or broken.
MAX_ENV_BYTES = 16 * 1024

_FORBIDDEN_IN_ARGUMENT = str.maketrans("", "", "\r\n\x00")
_PLAIN_ARGUMENT = re.compile(r'[^\\"\r\n\x00]*')  # needs only the quotes around it
_VERBS_SEEN: set[str] = set()  # verbs already checked (they are the code's constants)


class AgiProtocolError(Exception):
    """The peer sent something that is not FastAGI."""


class ReplyCode(int, Enum):
    SUCCESS = 200
    INVALID_COMMAND = 510
    DEAD_CHANNEL = 511
    USAGE = 520


class AgiEnvironment:
    """The ``agi_*`` variables Asterisk sends when a call is handed to us.

    Read as they are asked for: a call asks for a handful of the 25 or so, and splitting every
    line of every call into a dictionary was an eighth of the engine's work per call. A variable
    is found by its line in the block (the first such line or the last: see
    _WRITTEN_BEFORE_CALLER_DATA) and kept once found; :attr:`variables` reads them all."""

    def __init__(self, text: str) -> None:
        self._text = "\n" + text  # every line, the first too, starts after a "\n"
        self._found: dict[str, str] = {}
        self._all: dict[str, str] | None = None

    def get(self, name: str, default: str = "") -> str:
        value = self._found.get(name)
        if value is None:
            value = _find_variable(self._text, name)
            if value is None:
                return default
            self._found[name] = value
        return value

    @property
    def variables(self) -> dict[str, str]:
        """Every variable of the block."""
        if self._all is None:
            self._all = _all_variables(self._text)
        return self._all

    @property
    def uniqueid(self) -> str:
        return self.get("uniqueid")

    @property
    def channel(self) -> str:
        return self.get("channel")

    @property
    def caller_number(self) -> str:
        number = self.get("callerid")
        return "" if number == "unknown" else number

    @property
    def caller_name(self) -> str:
        name = self.get("calleridname")
        return "" if name == "unknown" else name

    @property
    def extension(self) -> str:
        return self.get("extension")

    @property
    def language(self) -> str:
        return self.get("language")

    @property
    def script(self) -> str:
        """The script path without its query string, e.g. ``hotline``."""
        return _script_of(self.get("network_script"))

    @property
    def query(self) -> dict[str, str]:
        """The query string of ``agi://host/script?key=value``."""
        return dict(parse_qsl(urlsplit("//x/" + self.get("network_script")).query))


@functools.lru_cache(maxsize=256)  # asked several times per call, and the same few scripts call after call
def _script_of(network_script: str) -> str:
    return urlsplit("//x/" + network_script).path.lstrip("/")


# Asterisk writes these before the caller's number and name, which it writes raw: a caller name
# holding "\nagi_network_script: x" could otherwise pick our handler. For these the first
# occurrence is Asterisk's own; for the variables written after the name, the last one is.
_WRITTEN_BEFORE_CALLER_DATA = frozenset(
    {
        "network",
        "network_script",
        "request",
        "channel",
        "language",
        "type",
        "uniqueid",
        "version",
        "callerid",
        "calleridname",
    }
)


def parse_environment(raw: bytes) -> AgiEnvironment:
    """An environment block: ``agi_name: value`` lines, the name up to the first colon and one
    space after it dropped. Other lines (a continuation of a raw caller name, a blank line from a
    hostile one) are not variables."""
    # ("replace" as a positional argument: the compiled engine decodes that form itself; with
    # errors= it is a call through Python, here and wherever a reply is decoded.)
    return AgiEnvironment(raw.decode("utf-8", "replace"))


def _value_of(line_rest: str) -> str:
    """A variable's value from what follows the colon of its line."""
    value = line_rest[1:] if line_rest.startswith(" ") else line_rest
    # Trailing CRs stripped here, not in a pattern: "(.*?)\r*$" would be quadratic on a run of CRs.
    return value.rstrip("\r") if value.endswith("\r") else value


_MARKERS: dict[str, str] = {}  # a variable's name -> its line's start, "\\nagi_NAME:"


def _find_variable(text: str, name: str) -> str | None:
    """One variable of ``text`` (the block after a "\\n"), or None. Searched for, not split out:
    the compiled string search runs over the block once per variable asked for."""
    marker = _MARKERS.get(name)
    if marker is None:
        marker = "\nagi_" + name + ":"
        if len(_MARKERS) < 256:  # the names the code asks for: a few constants
            _MARKERS[name] = marker
    # The variables written before the caller's data are Asterisk's at their first line; the
    # rest are Asterisk's at their last.
    start = text.find(marker) if name in _WRITTEN_BEFORE_CALLER_DATA else text.rfind(marker)
    if start < 0:
        return None
    start += len(marker)
    end = text.find("\n", start)
    if end < 0:
        end = len(text)
    # As _value_of, with one slice: one space after the colon dropped, trailing CRs stripped.
    if start < end and text[start] == " ":
        start += 1
    while end > start and text[end - 1] == "\r":
        end -= 1
    return text[start:end]


def _all_variables(text: str) -> dict[str, str]:
    """Every variable of ``text``, by the same rules as _find_variable."""
    variables: dict[str, str] = {}
    for line in text.split("\n"):
        colon = line.find(":")
        if colon < 4 or not line.startswith("agi_"):
            continue
        name = line[4:colon]
        if name in variables and name in _WRITTEN_BEFORE_CALLER_DATA:
            continue  # written twice: a caller name carrying lines of its own; Asterisk's came first
        variables[name] = _value_of(line[colon + 1:])
    return variables


def quote_argument(value: str | int) -> str:
    """Quote one argument so that res_agi's parser sees exactly one word with this text.

    CR, LF and NUL cannot be represented (they end the command line), so they are removed.
    """
    text = value if isinstance(value, str) else str(value)
    if _PLAIN_ARGUMENT.fullmatch(text):  # the common case (paths, names, numbers): nothing to escape
        return '"' + text + '"'
    text = text.translate(_FORBIDDEN_IN_ARGUMENT)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_unique_command(verb: str, *arguments: str | int) -> bytes:
    """Build one command line. ``verb`` is ours (a constant), every argument is quoted."""
    if verb not in _VERBS_SEEN:
        if not re.fullmatch(r"[A-Z]+(?: [A-Z]+)*", verb):
            raise ValueError(f"not an AGI verb: {verb!r}")
        _VERBS_SEEN.add(verb)
    if arguments:
        line = verb + " " + " ".join([quote_argument(a) for a in arguments]) + "\n"
    else:
        line = verb + "\n"
    encoded = line.encode("utf-8")
    if len(encoded) > MAX_COMMAND_BYTES:
        raise ValueError(f"AGI command of {len(encoded)} bytes exceeds Asterisk's line buffer")
    return encoded


# Most lines recur call after call (a menu's prompts and keys, a route's variables): each is built
# and checked once. A line that cannot recur (the sync nonce, a caller's digits) goes by
# encode_unique_command. A dictionary, not functools.lru_cache: the compiled engine looks it up
# without a call through Python's argument parsing, several times per call.
_COMMAND_LINES: dict[tuple[str, tuple[str | int, ...]], bytes] = {}
MAX_CACHED_LINES = 2048


def exactly_text_or_numbers(values: tuple[str | int, ...]) -> bool:
    """Whether every value is a str or an int, not a subclass (True == 1 and 1.0 == 1 as keys of a
    cache, and their lines differ)."""
    for value in values:
        kind = type(value)
        if kind is not str and kind is not int:
            return False
    return True


def command_line(verb: str, arguments: tuple[str | int, ...] = ()) -> bytes:
    """The line of a command that recurs (cached). Arguments are text or whole numbers."""
    if not exactly_text_or_numbers(arguments):
        return encode_unique_command(verb, *arguments)
    key = (verb, arguments)
    line = _COMMAND_LINES.get(key)
    if line is None:
        line = encode_unique_command(verb, *arguments)
        if len(_COMMAND_LINES) >= MAX_CACHED_LINES:  # lines that did not recur after all: start again
            _COMMAND_LINES.clear()
        _COMMAND_LINES[key] = line
    return line


def encode_command(verb: str, *arguments: str | int) -> bytes:
    """command_line with the arguments as arguments."""
    return command_line(verb, arguments)


def cached_command_lines() -> int:
    return len(_COMMAND_LINES)


_NO_FIELDS: Mapping[str, str] = MappingProxyType({})


def _int_or_none(text: str) -> int | None:
    """``int(text)``, or None when it is not a number (or one of more digits than Python converts)."""
    try:
        return int(text)
    except ValueError:
        return None


class Reply:
    """One reply to one command, never changed once made (replies are shared: see reply_of_line).
    A plain class, which the compiled engine reads as a C struct: a NamedTuple's fields and
    properties were Python attribute lookups, several per command."""

    def __init__(self, code: int, result: str = "", data: str | None = None,
                 fields: Mapping[str, str] = _NO_FIELDS, text: str = "") -> None:
        self.code = code
        self.result = result
        self.data = data
        self.fields = fields
        self.text = text
        self.result_int = _int_or_none(result)  # the result as a number, None when it is not one

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reply):
            return NotImplemented
        return (self.code, self.result, self.data, dict(self.fields), self.text) == (
            other.code, other.result, other.data, dict(other.fields), other.text)

    def __repr__(self) -> str:
        return f"Reply({self.code}, {self.result!r}, {self.data!r}, {dict(self.fields)!r}, {self.text!r})"


_RESULT = re.compile(r"^200 result=(\S*)(.*)$")
_FIELD = r"[A-Za-z_][A-Za-z0-9_]*=(?:\"[^\"]*\"|\S*)"
_FIELDS = re.compile(rf"^((?:\s+{_FIELD})*)\s*$")
_ONE_FIELD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|\S*)")
_DATA_THEN_FIELDS = re.compile(rf"^\s\((.*?)\)((?:\s+{_FIELD})*)\s*$", re.DOTALL)


def _parse_fields(text: str) -> dict[str, str]:
    return {key: value[1:-1] if value.startswith('"') else value for key, value in _ONE_FIELD.findall(text)}


def parse_success(line: str, *, data_is_rest: bool = False) -> Reply:
    """Parse a ``200 result=...`` line.

    ``data_is_rest`` is for replies whose parenthesised data is a free text that runs to the end
    of the line (GET VARIABLE): a value like ``a) b=c`` must not be read as a field.
    """
    match = _RESULT.match(line)
    if match is None:
        raise AgiProtocolError(f"malformed 200 reply: {line!r}")
    result, rest = match.group(1), match.group(2)
    if not rest.strip():
        return Reply(ReplyCode.SUCCESS, result, None, {}, line)
    if rest.startswith(" (") and data_is_rest and rest.endswith(")"):
        return Reply(ReplyCode.SUCCESS, result, rest[2:-1], {}, line)
    with_data = _DATA_THEN_FIELDS.match(rest)
    if with_data is not None:
        return Reply(ReplyCode.SUCCESS, result, with_data.group(1), _parse_fields(with_data.group(2)), line)
    if _FIELDS.match(rest):
        return Reply(ReplyCode.SUCCESS, result, None, _parse_fields(rest), line)
    raise AgiProtocolError(f"malformed 200 reply: {line!r}")


class LineKind(Enum):
    REPLY = "reply"
    USAGE_START = "usage_start"
    HANGUP = "hangup"


def _has_code(line: str) -> bool:
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses (found by the fuzzer).
    return len(line) >= 3 and line[:3].isascii() and line[:3].isdigit()


def classify_line(line: str) -> LineKind:
    """What a line read between commands is: a reply, the start of a 520 block, or HANGUP."""
    if line == "HANGUP":
        return LineKind.HANGUP
    if line.startswith("520-"):
        return LineKind.USAGE_START
    if _has_code(line):
        return LineKind.REPLY
    raise AgiProtocolError(f"unexpected line from Asterisk: {line[:80]!r}")


# The replies to most commands (SET VARIABLE, EXEC, ANSWER, a prompt nobody interrupted), parsed once.
_PLAIN_REPLIES = {line: Reply(ReplyCode.SUCCESS, line[11:], None, _NO_FIELDS, line)
                  for line in ("200 result=0", "200 result=1", "200 result=-1")}


def parse_reply(line: str, *, data_is_rest: bool = False) -> Reply:
    """Parse a one-line reply: 200, 510, 511 or a single-line 520."""
    plain = _PLAIN_REPLIES.get(line)
    if plain is not None:
        return plain
    if line.startswith("200 result="):  # most replies: "200 result=1", "200 result=49 endpos=1200"
        # "200 result=(-?\d*)( endpos=\d+)?" read without the regex engine: this runs for most
        # replies of every call, and these string methods are compiled ones. (isdigit() takes a
        # few digits \d does not, such as "²"; parse_success would read those lines the same.)
        space = line.find(" ", 11)
        result = line[11:] if space < 0 else line[11:space]
        number = result[1:] if result.startswith("-") else result
        if not number or number.isdigit():
            if space < 0:
                return Reply(ReplyCode.SUCCESS, result, None, _NO_FIELDS, line)
            rest = line[space:]
            endpos = rest[8:]
            if rest.startswith(" endpos=") and endpos and endpos.isdigit():
                return Reply(ReplyCode.SUCCESS, result, None, {"endpos": endpos}, line)
    if not _has_code(line):
        raise AgiProtocolError(f"reply without a status code: {line[:80]!r}")
    code = int(line[:3])
    if code == ReplyCode.SUCCESS:
        return parse_success(line, data_is_rest=data_is_rest)
    return Reply(code, "", None, {}, line)


# Plain reply lines seen before, and their replies: most replies are a few lines that recur
# ("200 result=0", a key's code). Only "200 result=N" of up to 3 characters, nothing after it: a
# key or a status, never a caller's digits (GET DATA's result) nor a varying endpos=.
_REPLIES_SEEN: dict[bytes, Reply] = {}
MAX_SEEN_REPLIES = 512
MAX_SEEN_REPLY_BYTES = len(b"200 result=-12\n")


def reply_of_line(raw: bytes, *, data_is_rest: bool = False) -> Reply:
    """The reply of one whole line as read (with its b"\\n")."""
    reply = _REPLIES_SEEN.get(raw)
    if reply is not None:
        return reply
    reply = parse_reply(raw.decode("utf-8", "replace").rstrip("\r\n"), data_is_rest=data_is_rest)
    # 32, 40: " " and "(" (as numbers: see connection.NEWLINE).
    if len(raw) <= MAX_SEEN_REPLY_BYTES and 32 not in raw[4:] and 40 not in raw:
        if len(_REPLIES_SEEN) >= MAX_SEEN_REPLIES:
            _REPLIES_SEEN.clear()
        _REPLIES_SEEN[raw] = reply
    return reply


def is_usage_end(line: str) -> bool:
    return line.startswith("520 ")
