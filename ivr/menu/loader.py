"""Load a menu YAML file into a validated :class:`Menu`, or explain exactly what is wrong.

PyYAML composes the document into nodes that carry their line and column; we build plain data
from those nodes ourselves so that every value keeps its position, and so that nothing but plain
scalars, lists and mappings can come out of a file (no ``!!python/...`` tags, no anchors and
aliases, which admins do not need and which make alias bombs possible).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ivr.menu.graph import check_graph
from ivr.menu.schema import Menu

MAX_MENU_BYTES = 1024 * 1024
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

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class MenuProblem:
    file: str
    line: int  # 1-based
    column: int  # 1-based
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class MenuError(Exception):
    def __init__(self, problems: list[MenuProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class _Positions:
    """Where each value of the document stands, by its path from the root."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.marks: dict[Path_, tuple[int, int]] = {}

    def problem(self, path: Path_, message: str) -> MenuProblem:
        # Walk back to the nearest ancestor we have a position for (a missing field has none).
        for end in range(len(path), -1, -1):
            mark = self.marks.get(path[:end])
            if mark is not None:
                return MenuProblem(self.file, mark[0], mark[1], message)
        return MenuProblem(self.file, 1, 1, message)


def _plain(node: yaml.Node, path: Path_, positions: _Positions, loader: yaml.SafeLoader) -> Any:
    positions.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if node.tag not in _PLAIN_TAGS:
        raise MenuError([positions.problem(path, f"tag {node.tag!r} is not allowed in a menu")])
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise MenuError([positions.problem(path, "mapping keys must be plain values")])
            key = str(key_node.value)
            if key == "<<":
                raise MenuError([positions.problem(path, "merge keys (<<) are not allowed in a menu")])
            if key in result:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                raise MenuError([MenuProblem(positions.file, line, col, f"duplicate key {key!r}")])
            positions.marks[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = _plain(value_node, (*path, key), positions, loader)
            # Point errors about a value at the value, but keep the key's position if it is empty.
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, (*path, i), positions, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node)


class _NoAliasComposer(yaml.SafeLoader):
    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError(None, None, "aliases (*name) are not allowed in a menu", event.start_mark)
        event = self.peek_event()  # type: ignore[no-untyped-call]
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise yaml.MarkedYAMLError(None, None, "anchors (&name) are not allowed in a menu", event.start_mark)
        return super().compose_node(parent, index)


def parse_menu_text(text: str, file: str = "<menu>") -> Menu:
    """Parse and validate menu text. Raises :class:`MenuError` with every problem found."""
    if len(text.encode("utf-8", errors="replace")) > MAX_MENU_BYTES:
        raise MenuError([MenuProblem(file, 1, 1, f"menu file is larger than {MAX_MENU_BYTES} bytes")])
    positions = _Positions(file)
    loader = _NoAliasComposer(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise MenuError([MenuProblem(file, 1, 1, "the menu file is empty")])
        data = _plain(root, (), positions, loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise MenuError([MenuProblem(file, line, col, f"YAML: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise MenuError([MenuProblem(file, 1, 1, f"YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise MenuError([MenuProblem(file, 1, 1, "a menu file must be a mapping")])
    try:
        menu = Menu.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location = tuple(error["loc"])
            # Discriminated unions add the tag name to the location; drop steps that are not keys.
            path: Path_ = ()
            for step in location:
                if (*path, step) in positions.marks:
                    path = (*path, step)
            where = ".".join(str(s) for s in location)
            problems.append(positions.problem(path, f"{where}: {error['msg']}"))
        raise MenuError(problems) from None
    graph_problems = [positions.problem(path, message) for path, message in check_graph(menu)]
    if graph_problems:
        raise MenuError(graph_problems)
    return menu


def load_menu(path: str | Path) -> Menu:
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_MENU_BYTES:
            raise MenuError([MenuProblem(str(file), 1, 1, f"menu file is larger than {MAX_MENU_BYTES} bytes")])
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise MenuError([MenuProblem(str(file), 1, 1, f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise MenuError([MenuProblem(str(file), 1, 1, f"not UTF-8 text: {exc.reason}")]) from None
    return parse_menu_text(text, str(file))
