"""Load a menu YAML file into a validated :class:`Menu`, or explain exactly what is wrong."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from ivr.menu.graph import check_graph
from ivr.menu.schema import Menu
from ivr.yamldoc import ConfigError, parse_yaml, read_text, validate


def parse_menu_text(text: str, file: str = "<menu>", skills: Collection[str] | None = None) -> Menu:
    """Parse and validate menu text against the routing rules' ``skills`` (when given).

    Raises :class:`ConfigError` with every problem found.
    """
    data, positions = parse_yaml(text, file)
    menu = validate(Menu, data, positions)
    graph_problems = [positions.problem(path, message) for path, message in check_graph(menu, skills)]
    if graph_problems:
        raise ConfigError(graph_problems)
    return menu


def load_menu(path: str | Path, skills: Collection[str] | None = None) -> Menu:
    return parse_menu_text(read_text(path), str(path), skills)
