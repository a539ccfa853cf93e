"""Checks a schema cannot express: the menu as a graph, and what its nodes refer to."""

from __future__ import annotations

from collections.abc import Collection, Iterator

from ivr.menu.schema import (
    INPUT_NODES,
    BranchNode,
    GotoNode,
    HangupNode,
    InputNode,
    LanguageNode,
    ListenNode,
    Menu,
    MenuNode,
    PlayNode,
    QueryNode,
    RouteNode,
    TicketNode,
    TicketStatusNode,
    VerifyNode,
)

Problem = tuple[tuple[str | int, ...], str]


def fallback_of(menu: Menu, node: MenuNode | InputNode) -> str | None:
    return node.fallback or menu.defaults.fallback


def edges(menu: Menu, node_id: str) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path of the field, target node) for every static transition out of a node."""
    node = menu.nodes[node_id]
    base: tuple[str | int, ...] = ("nodes", node_id)
    if isinstance(node, MenuNode):
        for key, target in node.options.items():
            yield (*base, "options", key), target
        fallback = fallback_of(menu, node)
        if fallback:
            yield (*base, "fallback"), fallback
    elif isinstance(node, InputNode):
        if node.next:
            yield (*base, "next"), node.next
        fallback = fallback_of(menu, node)
        if fallback:
            yield (*base, "fallback"), fallback
    elif isinstance(node, (PlayNode, LanguageNode)):
        if node.next:
            yield (*base, "next"), node.next
    elif isinstance(node, ListenNode):
        for name, intent in node.intents.items():
            yield (*base, "intents", name, "goto"), intent.goto
        yield (*base, "fallback"), node.fallback
    elif isinstance(node, (VerifyNode, TicketNode)):
        yield (*base, "next"), node.next
        yield (*base, "fallback"), node.fallback
    elif isinstance(node, TicketStatusNode):
        yield (*base, "next"), node.next
    elif isinstance(node, QueryNode):
        yield (*base, "next"), node.next
        yield (*base, "requires_verify"), node.requires_verify
    elif isinstance(node, BranchNode):
        for i, case in enumerate(node.cases):
            yield (*base, "cases", i, "goto"), case.goto
        yield (*base, "default"), node.default
    elif isinstance(node, GotoNode):
        if node.target:
            yield (*base, "target"), node.target
        else:
            # "back" returns to the previous menu, or to start when there is none: counting the
            # edge to start lets the loop check catch `start -> play -> back`.
            yield (*base, "back"), menu.start


def prompt_refs(menu: Menu, node_id: str) -> Iterator[tuple[tuple[str | int, ...], str]]:
    node = menu.nodes[node_id]
    base: tuple[str | int, ...] = ("nodes", node_id)
    if isinstance(node, PlayNode):
        for i, prompt in enumerate(node.prompts):
            yield (*base, "prompts", i), prompt
        return
    for field in ("prompt", "invalid_prompt", "no_input_prompt", "announce", "no_match_prompt",
                  "unavailable_prompt", "missing_prompt", "describe_prompt"):
        value = getattr(node, field, None)
        if value:
            yield (*base, field), value
    if isinstance(node, (QueryNode, TicketStatusNode)):
        for i, part in enumerate(node.say):
            if not part.startswith("{"):
                yield (*base, "say", i), part
        for code, prompt in node.values.items():
            yield (*base, "values", code), prompt
    if isinstance(node, InputNode):
        for i, part in enumerate(node.confirm or []):
            if not part.startswith("{"):
                yield (*base, "confirm", i), part
    if isinstance(node, TicketStatusNode):
        for i, part in enumerate(node.say_closed or []):
            if not part.startswith("{"):
                yield (*base, "say_closed", i), part
    if isinstance(node, TicketNode):
        for i, part in enumerate(node.read_back):
            if not part.startswith("{"):
                yield (*base, "read_back", i), part
    if isinstance(node, (MenuNode, InputNode)):
        for field in ("invalid_prompt", "no_input_prompt"):
            if getattr(node, field) is None and getattr(menu.defaults, field):
                yield ("defaults", field), getattr(menu.defaults, field)


def _loops_without_input(menu: Menu) -> list[list[str]]:
    """Cycles made only of nodes that never wait for the caller: the call would spin forever."""
    silent = {nid for nid, node in menu.nodes.items() if not isinstance(node, INPUT_NODES)}
    graph = {nid: [t for _, t in edges(menu, nid) if t in silent] for nid in silent}
    colour: dict[str, int] = {}
    loops: list[list[str]] = []
    stack: list[str] = []

    def visit(nid: str) -> None:
        colour[nid] = 1
        stack.append(nid)
        for target in graph[nid]:
            if colour.get(target) == 1:
                loops.append([*stack[stack.index(target) :], target])
            elif target not in colour:
                visit(target)
        stack.pop()
        colour[nid] = 2

    for nid in sorted(silent):
        if nid not in colour:
            visit(nid)
    return loops


def check_graph(menu: Menu, skills: Collection[str] | None = None) -> list[Problem]:
    """Graph problems; routes are checked against ``skills`` (the routing rules') when given."""
    problems: list[Problem] = []
    if menu.default_language not in menu.languages:
        problems.append((("default_language",), f"default_language {menu.default_language!r} is not in languages"))
    if menu.start not in menu.nodes:
        problems.append((("start",), f"start node {menu.start!r} does not exist"))
    if menu.defaults.fallback and menu.defaults.fallback not in menu.nodes:
        problems.append((("defaults", "fallback"), f"unknown node {menu.defaults.fallback!r}"))

    for nid, node in menu.nodes.items():
        for path, target in edges(menu, nid):
            if target not in menu.nodes:
                problems.append((path, f"unknown node {target!r}"))
        if isinstance(node, (PlayNode, InputNode, LanguageNode)) and node.next is None:
            problems.append((("nodes", nid), f"dead end: {node.type} node {nid!r} has no next"))
        if isinstance(node, (MenuNode, InputNode)) and fallback_of(menu, node) is None:
            problems.append((("nodes", nid), f"{node.type} node {nid!r} has no fallback (nor defaults.fallback)"))
        if isinstance(node, RouteNode) and skills is not None and node.skill not in skills:
            problems.append((("nodes", nid, "skill"), f"route to unknown skill {node.skill!r}"))
        if isinstance(node, MenuNode) and node.speech is not None:
            for key, phrases in node.speech.items():
                missing = [lang for lang in menu.languages if not phrases.get(lang)]
                if missing:
                    problems.append((("nodes", nid, "speech", key), f"no phrases for {', '.join(missing)}"))
        if isinstance(node, ListenNode) and node.fallback in menu.nodes and not isinstance(
                menu.nodes[node.fallback], (MenuNode, InputNode)):
            # Without speech a listen node goes straight on: its fallback must wait for keys, or a
            # caller could be spun round a loop of nodes that wait for nothing.
            problems.append((("nodes", nid, "fallback"), "a listen node's fallback must be a menu or input node"))
        if isinstance(node, ListenNode):
            for name, intent in node.intents.items():
                missing = [lang for lang in menu.languages if not intent.phrases.get(lang)]
                if missing:
                    problems.append((("nodes", nid, "intents", name, "phrases"),
                                     f"intent {name!r} has no phrases for {', '.join(missing)}"))
        if isinstance(node, LanguageNode):
            for key, language in node.options.items():
                if language not in menu.languages:
                    problems.append((("nodes", nid, "options", key), f"language {language!r} is not in languages"))
        for path, prompt in prompt_refs(menu, nid):
            if prompt not in menu.prompts:
                problems.append((path, f"unknown prompt {prompt!r}"))

    if menu.survey is not None:
        for field in ("prompt", "thanks"):
            prompt = getattr(menu.survey, field)
            if prompt and prompt not in menu.prompts:
                problems.append((("survey", field), f"unknown prompt {prompt!r}"))

    if menu.waiting is not None:
        for field in ("position", "wait_minutes"):
            for i, part in enumerate(getattr(menu.waiting, field)):
                if not part.startswith("{") and part not in menu.prompts:
                    problems.append((("waiting", field, i), f"unknown prompt {part!r}"))
        for field in ("wait_soon", "callback_offer", "callback_booked", "callback_unavailable"):
            prompt = getattr(menu.waiting, field)
            if prompt and prompt not in menu.prompts:
                problems.append((("waiting", field), f"unknown prompt {prompt!r}"))

    if menu.revisit is not None:
        revisit = menu.revisit
        named: list[tuple[tuple[str | int, ...], str]] = [
            (("revisit", "intro", i), p) for i, p in enumerate(revisit.intro) if not p.startswith("{")]
        named += [(("revisit", "results", code), p) for code, p in revisit.results.items()]
        named += [(("revisit", f), getattr(revisit, f)) for f in ("resolved_question", "score_question", "reopened",
                                                                 "thanks") if getattr(revisit, f)]
        problems += [(path, f"unknown prompt {p!r}") for path, p in named if p not in menu.prompts]

    for pid, texts in menu.prompts.items():
        missing = [lang for lang in menu.languages if not texts.get(lang, "").strip()]
        if missing:
            problems.append((("prompts", pid), f"prompt {pid!r} has no text for {', '.join(missing)}"))
        for lang in texts:
            if lang not in menu.languages:
                problems.append((("prompts", pid, lang), f"language {lang!r} is not in languages"))

    if menu.start in menu.nodes:
        reached = {menu.start}
        todo = [menu.start]
        while todo:
            for _, target in edges(menu, todo.pop()):
                if target in menu.nodes and target not in reached:
                    reached.add(target)
                    todo.append(target)
        for nid in menu.nodes:
            if nid not in reached:
                problems.append((("nodes", nid), f"unreachable node {nid!r}: nothing leads to it from {menu.start!r}"))

    for loop in _loops_without_input(menu):
        problems.append((("nodes", loop[0]), "loop with no caller input: " + " -> ".join(loop)))

    return problems


__all__ = ["HangupNode", "check_graph", "edges", "fallback_of", "prompt_refs"]
