"""Admin-edited YAML (menus, routing rules): plain data with positions, or clear problems.

PyYAML composes the document into nodes that carry their line and column; we build plain data
from those nodes ourselves so that every value keeps its position, and so that nothing but plain
scalars, lists and mappings can come out of a file (no ``!!python/...`` tags, no anchors and
aliases, which admins do not need and which make alias bombs possible). Pydantic validates the
data; its error locations are mapped back to ``file:line:column``.
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

MAX_FILE_BYTES = 1024 * 1024
_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:map",
}

YamlPath = tuple[str | int, ...]
Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    line: int  # 1-based
    column: int  # 1-based
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class ConfigError(Exception):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class Positions:
    """Where each value of a document stands, by its path from the root."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.marks: dict[YamlPath, tuple[int, int]] = {}  # where each value starts
        self.key_marks: dict[YamlPath, tuple[int, int]] = {}  # where each mapping key starts

    def problem(self, path: YamlPath, message: str) -> ConfigProblem:
        # Walk back to the nearest ancestor we have a position for (a missing field has none).
        for end in range(len(path), -1, -1):
            mark = self.marks.get(path[:end])
            if mark is not None:
                return ConfigProblem(self.file, mark[0], mark[1], message)
        return ConfigProblem(self.file, 1, 1, message)


def _plain(node: yaml.Node, path: YamlPath, positions: Positions, loader: yaml.SafeLoader) -> Any:
    positions.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if node.tag not in _PLAIN_TAGS:
        raise ConfigError([positions.problem(path, f"tag {node.tag!r} is not allowed here")])
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError([positions.problem(path, "mapping keys must be plain values")])
            key = str(key_node.value)
            if key == "<<":
                raise ConfigError([positions.problem(path, "merge keys (<<) are not allowed here")])
            if key in result:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                raise ConfigError([ConfigProblem(positions.file, line, col, f"duplicate key {key!r}")])
            positions.key_marks[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = _plain(value_node, (*path, key), positions, loader)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, (*path, i), positions, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node)


class _NoAliasComposer(yaml.SafeLoader):
    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError(None, None, "aliases (*name) are not allowed here", event.start_mark)
        event = self.peek_event()  # type: ignore[no-untyped-call]
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise yaml.MarkedYAMLError(None, None, "anchors (&name) are not allowed here", event.start_mark)
        return super().compose_node(parent, index)


def parse_yaml(text: str, file: str) -> tuple[dict[str, Any], Positions]:
    """Plain data and the position of each value; raises :class:`ConfigError`."""
    if len(text.encode("utf-8", errors="replace")) > MAX_FILE_BYTES:
        raise ConfigError([ConfigProblem(file, 1, 1, f"file is larger than {MAX_FILE_BYTES} bytes")])
    positions = Positions(file)
    try:
        loader = _NoAliasComposer(text)
    except yaml.reader.ReaderError as exc:  # a control character anywhere: refused before parsing
        before = text[: exc.position]
        line, column = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        problem = ConfigProblem(file, line, column, f"YAML: character #x{exc.character:04x} is not allowed")
        raise ConfigError([problem]) from None
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError([ConfigProblem(file, 1, 1, "the file is empty")])
        data = _plain(root, (), positions, loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ConfigError([ConfigProblem(file, line, col, f"YAML: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(file, 1, 1, f"YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(file, 1, 1, "the file must hold a mapping")])
    return data, positions


def _field_names(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[str]:
    """Every field name a model and its nested models accept (for "did you mean" hints)."""
    seen = seen if seen is not None else set()
    if model in seen:
        return set()
    seen.add(model)
    names = set(model.model_fields)

    def walk(annotation: object) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.update(_field_names(annotation, seen))
        for inner in typing.get_args(annotation):
            walk(inner)

    for field in model.model_fields.values():
        walk(field.annotation)
    return names


def validate(model: type[Model], data: dict[str, Any], positions: Positions) -> Model:
    """Validate with pydantic; every error becomes a positioned problem in plain words."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location = tuple(error["loc"])
            # Discriminated unions add the tag name to the location; keep only steps that are keys.
            path: YamlPath = ()
            for step in location:
                if (*path, step) in positions.marks:
                    path = (*path, step)
            where = ".".join(str(s) for s in path)
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden" and path:
                field = str(path[-1])
                hint = difflib.get_close_matches(field, _field_names(model), n=1)
                message = f"unknown field {field!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                line, column = positions.key_marks.get(path, positions.marks.get(path, (1, 1)))
                problems.append(ConfigProblem(positions.file, line, column, message))
                continue
            problems.append(positions.problem(path, f"{where}: {message}" if where else message))
        raise ConfigError(problems) from None


def read_text(path: str | Path) -> str:
    """A config file's text, refusing what is too large or not UTF-8."""
    file = Path(path)
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError([ConfigProblem(str(file), 1, 1, f"file is larger than {MAX_FILE_BYTES} bytes")])
        return file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(file), 1, 1, f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(str(file), 1, 1, f"not UTF-8 text: {exc.reason}")]) from None
