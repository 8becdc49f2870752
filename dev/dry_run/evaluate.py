"""Evaluate parsed expressions, render ``${{ }}`` templates and decide ``if:`` conditions.

Values follow GitHub's rules: falsy are ``false``, ``0``, ``''``, ``null`` and NaN; ``==``
compares strings case-insensitively and values of different types as numbers; property names
are case-insensitive; a property of ``null`` or of a string is ``null``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from dev.dry_run.expressions import (
    STATUS_FUNCTIONS,
    ExpressionError,
    Node,
    Status,
    Strict,
    parse,
    walk,
)

Contexts = Mapping[str, Any]
_TEMPLATE = re.compile(r"\$\{\{(?P<expr>(?:[^'}]|'(?:[^']|'')*'|\}(?!\}))*)\}\}")


def truthy(value: Any) -> bool:
    """GitHub's truthiness: false, 0, '', null and NaN are false; everything else is true."""
    if isinstance(value, float) and math.isnan(value):
        return False
    return isinstance(value, dict | list) or value not in (None, False, 0, "")


def to_string(value: Any) -> str:
    """A value as text in a template: null is empty, booleans lower case, 3.0 is ``3``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2)
    return str(value)


def to_number(value: Any) -> float:
    """GitHub's coercion for comparisons of different types (objects and bad text are NaN)."""
    if value is None:
        return 0.0
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0.0
        try:
            return float(int(text, 16)) if text.lower().startswith("0x") else float(text)
        except ValueError:
            return math.nan
    return math.nan


def compare(op: str, left: Any, right: Any) -> bool:
    """``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` with GitHub's coercions."""
    if op == "!=":
        return not compare("==", left, right)
    both_text = isinstance(left, str) and isinstance(right, str)
    if op == "==":
        if both_text:
            return bool(left.casefold() == right.casefold())
        if isinstance(left, dict | list) or isinstance(right, dict | list):
            return left is right
        return to_number(left) == to_number(right)
    a, b = (left.casefold(), right.casefold()) if both_text else (to_number(left), to_number(right))
    return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])


def member(value: Any, key: Any, path: str) -> Any:
    """``value.key`` (or ``value[key]``): case-insensitive; strict mappings refuse unknown keys."""
    if isinstance(value, list):
        index = to_number(key)
        return value[int(index)] if index.is_integer() and 0 <= index < len(value) else None
    if not isinstance(value, dict):
        return None
    name = to_string(key)
    if name in value:
        return value[name]
    for candidate, item in value.items():
        if candidate.casefold() == name.casefold():
            return item
    if isinstance(value, Strict):
        raise ExpressionError(f"unknown {path}.{name}{value.hint}")
    return None


def _format(template: Any, *args: Any) -> str:
    def field(match: re.Match[str]) -> str:
        if match.group(0) in ("{{", "}}"):
            return match.group(0)[0]
        index = int(match.group(1))
        if index >= len(args):
            raise ExpressionError(f"format(): no argument {{{index}}}")
        return to_string(args[index])

    return re.sub(r"\{\{|\}\}|\{(\d+)\}", field, to_string(template))


def _contains(search: Any, item: Any) -> bool:
    if isinstance(search, list):
        return any(compare("==", element, item) for element in search)
    return to_string(item).casefold() in to_string(search).casefold()


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "contains": _contains,
    "startswith": lambda a, b: to_string(a).casefold().startswith(to_string(b).casefold()),
    "endswith": lambda a, b: to_string(a).casefold().endswith(to_string(b).casefold()),
    "format": _format,
    "join": lambda a, sep=",": to_string(sep).join(
        map(to_string, a if isinstance(a, list) else [a])
    ),
    "tojson": lambda a: json.dumps(a, indent=2),
    "fromjson": lambda a: json.loads(to_string(a)),
}


def check(node: Node, contexts: Contexts, status: Status | None) -> None:
    """Refuse unknown contexts, unknown functions and names a strict context lacks, anywhere
    in the expression (even in a branch that ``&&`` or ``||`` would skip)."""
    for item in walk(node):
        if item.kind == "call":
            known = item.value.lower() in FUNCTIONS
            status_fn = item.value.lower() in STATUS_FUNCTIONS
            if not known and not status_fn:
                raise ExpressionError(f"unknown function {item.value}()")
            if status_fn and status is None:
                raise ExpressionError(f"{item.value}() is only allowed in an if: condition")
        elif item.kind == "name" and item.value not in contexts:
            raise ExpressionError(f"unknown context {item.value!r} (known: {sorted(contexts)})")
        elif item.kind == "member":
            _check_path(item, contexts)


def _check_path(node: Node, contexts: Contexts) -> None:
    """Resolve a literal path such as ``steps.smoke.conclusion`` through the strict levels."""
    keys: list[Any] = []
    while node.kind == "member" and node.children[1].kind == "literal":
        keys.insert(0, node.children[1].value)
        node = node.children[0]
    if node.kind != "name":
        return
    value, path = contexts.get(node.value), node.value
    for key in keys:
        if not isinstance(value, Strict):
            return
        value = member(value, key, path)
        path = f"{path}.{to_string(key)}"


def evaluate(node: Node, contexts: Contexts, status: Status | None = None) -> Any:
    """The value of a checked expression (``&&`` and ``||`` return one of their operands)."""
    return _KINDS[node.kind](node, contexts, status)


def _member(node: Node, contexts: Contexts, status: Status | None) -> Any:
    obj, key = (evaluate(child, contexts, status) for child in node.children)
    return member(obj, key, _describe(node.children[0]))


def _call(node: Node, contexts: Contexts, status: Status | None) -> Any:
    name = node.value.lower()
    if name in STATUS_FUNCTIONS:
        return (status or {})[name]()
    return FUNCTIONS[name](*(evaluate(child, contexts, status) for child in node.children))


def _binary(node: Node, contexts: Contexts, status: Status | None) -> Any:
    left = evaluate(node.children[0], contexts, status)
    if node.value == "&&":
        return evaluate(node.children[1], contexts, status) if truthy(left) else left
    if node.value == "||":
        return left if truthy(left) else evaluate(node.children[1], contexts, status)
    return compare(node.value, left, evaluate(node.children[1], contexts, status))


_KINDS: dict[str, Callable[[Node, Contexts, Status | None], Any]] = {
    "literal": lambda node, _contexts, _status: node.value,
    "name": lambda node, contexts, _status: contexts[node.value],
    "member": _member,
    "not": lambda node, contexts, status: not truthy(evaluate(node.children[0], contexts, status)),
    "call": _call,
    "binary": _binary,
}


def _describe(node: Node) -> str:
    if node.kind == "name":
        return str(node.value)
    if node.kind == "member" and node.children[1].kind == "literal":
        return f"{_describe(node.children[0])}.{to_string(node.children[1].value)}"
    return "(expression)"


def expression(text: str, contexts: Contexts, status: Status | None = None) -> Any:
    """Parse, check and evaluate one expression."""
    node = parse(text)
    check(node, contexts, status)
    return evaluate(node, contexts, status)


def render(text: Any, contexts: Contexts) -> str:
    """A string with every ``${{ expr }}`` replaced by its value as text.

    Raises:
        ExpressionError: an expression fails, or a ``${{`` is never closed.
    """
    if not isinstance(text, str):
        return to_string(text)
    parts, last = [], 0
    for match in [*_TEMPLATE.finditer(text), None]:
        literal = text[last : match.start() if match else len(text)]
        if "${{" in literal:
            raise ExpressionError(f"unterminated ${{{{ in {text!r}")
        parts.append(literal)
        if match is not None:
            parts.append(to_string(expression(match["expr"], contexts)))
            last = match.end()
    return "".join(parts)


def render_all(value: Any, contexts: Contexts) -> Any:
    """Render every string inside a YAML value (mappings and lists kept, keys as they are)."""
    if isinstance(value, dict):
        return {key: render_all(item, contexts) for key, item in value.items()}
    if isinstance(value, list):
        return [render_all(item, contexts) for item in value]
    return render(value, contexts) if isinstance(value, str) else value


def condition(raw: Any, contexts: Contexts, status: Status) -> bool:
    """Whether an ``if:`` holds. Without a status function it means ``success() && (...)``.

    Raises:
        ExpressionError: the condition fails, or mixes ``${{ }}`` with text (GitHub would
            read that as a non-empty string, always true).
    """
    if raw is None:
        return status["success"]()
    text = to_string(raw).strip()
    whole = _TEMPLATE.fullmatch(text)
    if whole is not None:
        text = whole["expr"]
    elif "${{" in text:
        raise ExpressionError(f"if: {raw!r} mixes ${{{{ }}}} with text: always true on GitHub")
    node = parse(text)
    check(node, contexts, status)
    uses_status = any(n.kind == "call" and n.value.lower() in STATUS_FUNCTIONS for n in walk(node))
    if not uses_status and not status["success"]():
        return False
    return truthy(evaluate(node, contexts, status))
