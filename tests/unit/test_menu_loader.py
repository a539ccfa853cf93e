"""Menu validation: every problem is reported with file:line:column, nothing unsafe is loaded."""

import textwrap
from pathlib import Path

import pytest

from ivr.config import SAMPLE_MENU
from ivr.menu.loader import load_menu, parse_menu_text
from ivr.yamldoc import ConfigError

BASE = """\
name: t
languages: [zh, en]
default_language: zh
start: main
defaults: {fallback: agent}
prompts:
  hello: {zh: 你好, en: hello}
nodes:
  main:
    type: menu
    prompt: hello
    options: {"1": agent}
  agent: {type: route, skill: general}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_menu_text(textwrap.dedent(text), "m.yaml")
    return [str(p) for p in caught.value.problems]


def test_sample_menu_is_valid() -> None:
    menu = load_menu(SAMPLE_MENU)
    assert set(menu.languages) == {"zh", "en"}
    assert {"balance", "fault_account", "agent_route", "fallback_route"} <= set(menu.nodes)


def test_base_is_valid() -> None:
    assert parse_menu_text(BASE).start == "main"


def test_yaml_syntax_error_has_position() -> None:
    found = problems(BASE + "  broken: [unclosed\n")
    # PyYAML notices the missing bracket at the end of the stream, the line after.
    assert found[0].startswith("m.yaml:15:1:") and "expected ',' or ']'" in found[0]


def test_unknown_field_points_at_the_node() -> None:
    found = problems(BASE.replace("    prompt: hello\n", "    prompt: hello\n    colour: red\n"))
    assert found == ["m.yaml:12:5: unknown field 'colour'"]


def test_misspelt_field_gets_a_suggestion() -> None:
    found = problems(BASE.replace('options: {"1": agent}', 'options: {"1": agent}\n    timout: 5'))
    assert found == ["m.yaml:13:5: unknown field 'timout' (did you mean 'timeout'?)"]


def test_default_language_not_offered_points_at_it() -> None:
    found = problems(BASE.replace("default_language: zh", "default_language: de"))
    assert found == ["m.yaml:3:19: default_language 'de' is not in languages"]


def test_prompt_text_in_a_language_not_offered() -> None:
    found = problems(BASE.replace("hello: {zh: 你好, en: hello}", "hello: {zh: 你好, eh: hello}"))
    assert found == ["m.yaml:7:10: prompt 'hello' has no text for en", "m.yaml:7:23: language 'eh' is not in languages"]


def test_wrong_type_points_at_the_value() -> None:
    found = problems(BASE.replace('options: {"1": agent}', 'options: {"1": agent}\n    timeout: soon'))
    assert any(p.startswith("m.yaml:13:") and "timeout" in p for p in found), found


def test_unknown_target_and_skill_and_prompt() -> None:
    text = BASE.replace('{"1": agent}', '{"1": agent, "2": nowhere}').replace("skill: general", "skill: sales")
    text = text.replace("prompt: hello", "prompt: missing")
    with pytest.raises(ConfigError) as caught:
        parse_menu_text(text, "m.yaml", skills={"general", "billing"})
    found = "\n".join(str(p) for p in caught.value.problems)
    assert "m.yaml:12:" in found and "unknown node 'nowhere'" in found
    assert "route to unknown skill 'sales'" in found
    assert "unknown prompt 'missing'" in found


def test_unreachable_node() -> None:
    found = problems(BASE + "  orphan: {type: hangup}\n")
    assert any(p.startswith("m.yaml:14:") and "unreachable node 'orphan'" in p for p in found), found


def test_dead_end() -> None:
    text = BASE.replace('{"1": agent}', '{"1": info}') + "  info: {type: play, prompts: [hello]}\n"
    found = problems(text)
    assert any("dead end" in p and "info" in p for p in found), found


def test_loop_without_caller_input() -> None:
    text = BASE.replace('{"1": agent}', '{"1": a}') + (
        "  a: {type: play, prompts: [hello], next: b}\n"
        "  b: {type: goto, target: a}\n"
    )
    found = problems(text)
    assert any("loop with no caller input" in p for p in found), found


def test_back_without_a_menu_before_it_is_a_loop() -> None:
    text = BASE.replace("start: main", "start: intro") + (
        "  intro: {type: play, prompts: [hello], next: again}\n"
        "  again: {type: goto, back: true}\n"
    )
    found = problems(text)
    assert any("loop with no caller input" in p and "intro" in p for p in found), found


def test_prompt_missing_a_language() -> None:
    found = problems(BASE.replace("hello: {zh: 你好, en: hello}", "hello: {zh: 你好}"))
    assert any(p.startswith("m.yaml:7:") and "no text for en" in p for p in found), found


def test_python_tags_are_refused() -> None:
    found = problems(BASE.replace("name: t", "name: !!python/object/apply:os.system ['echo pwned']"))
    assert "not allowed" in found[0] and found[0].startswith("m.yaml:1:")


def test_aliases_are_refused() -> None:
    bomb = 'a: &a ["x","x"]\nb: &b [*a,*a]\nc: [*b,*b]\n'
    found = problems(bomb)
    assert "not allowed" in found[0]


def test_duplicate_keys_are_refused() -> None:
    found = problems(BASE.replace("name: t", "name: t\nname: u"))
    assert "duplicate key 'name'" in found[0] and found[0].startswith("m.yaml:2:")


def test_huge_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(BASE + "#" * (2 * 1024 * 1024))
    with pytest.raises(ConfigError) as caught:
        load_menu(big)
    assert "larger than" in str(caught.value)


def test_prompt_ids_cannot_be_paths() -> None:
    found = problems(BASE.replace("prompt: hello", "prompt: ../../etc/passwd"))
    assert any("prompt" in p for p in found), found


def test_control_characters_are_refused_with_their_place() -> None:
    """Found by fuzzing: PyYAML refuses them before parsing, with an error of its own."""
    with pytest.raises(ConfigError, match=r"<menu>:2:16: YAML: character #x0007 is not allowed"):
        parse_menu_text("name: x\nlanguages: [zh]\x07\n")
