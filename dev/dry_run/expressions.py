"""GitHub Actions expressions: the grammar of ``${{ }}`` and ``if:``, parsed into a tree.

Literals (``'single quoted'``, numbers, ``true``, ``false``, ``null``), context paths
(``inputs.mode``, ``steps.smoke.conclusion``, ``vars['X']``), ``!``, comparisons (strings compare
case-insensitively, mixed types as numbers), ``&&`` and ``||`` (which return an operand, so
``vars.X || 'default'`` is a fallback) and the functions in :data:`FUNCTIONS`.

Unlike GitHub, which reads an unknown variable as an empty string, a context given as a
:class:`Strict` mapping makes a name it lacks an error, checked over the whole expression before
anything is evaluated (so a misspelt name fails even in a branch that ``&&`` skips).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any


class ExpressionError(ValueError):
    """An expression that cannot be read, or names something unknown."""


class Strict(dict[str, Any]):
    """A context (or object) whose keys are all known: reading another one is an error."""

    def __init__(self, items: Mapping[str, Any], hint: str = "") -> None:
        super().__init__(items)
        self.hint = hint


Status = Mapping[str, Callable[[], bool]]
STATUS_FUNCTIONS = ("success", "failure", "always", "cancelled")

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')"
    r"|(?P<number>-?(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?))"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*)"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\].,]))"
)
_KEYWORDS = {"true": True, "false": False, "null": None}


@dataclass(frozen=True)
class Node:
    """One node of a parsed expression: ``kind`` with its value and children."""

    kind: str  # literal, name, member, call, not, binary
    value: Any = None
    children: tuple[Node, ...] = ()


def tokens(text: str) -> list[tuple[str, str]]:
    """The (kind, text) tokens of an expression.

    Raises:
        ExpressionError: a character that starts no token.
    """
    found, position, text = [], 0, text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ExpressionError(f"unexpected {text[position:]!r} in {text!r}")
        kind = str(match.lastgroup)
        found.append((kind, str(match.group(kind))))
        position = match.end()
    return found


class _Parser:
    """Recursive descent, loosest first: ``||``, ``&&``, ``==``/``!=``, ``<``..., ``!``, access."""

    def __init__(self, text: str) -> None:
        self.text, self.items, self.at = text, tokens(text), 0

    def parse(self) -> Node:
        node = self.binary(0)
        if self.at != len(self.items):
            raise self.error(f"unexpected {self.items[self.at][1]!r}")
        return node

    LEVELS = (("||",), ("&&",), ("==", "!="), ("<", "<=", ">", ">="))

    def binary(self, level: int) -> Node:
        if level == len(self.LEVELS):
            return self.unary()
        node = self.binary(level + 1)
        while self.peek() in self.LEVELS[level]:
            op = self.take()
            node = Node("binary", op, (node, self.binary(level + 1)))
        return node

    def unary(self) -> Node:
        if self.peek() == "!":
            self.take()
            return Node("not", None, (self.unary(),))
        return self.postfix(self.primary())

    def primary(self) -> Node:
        if self.at >= len(self.items):
            raise self.error("unexpected end")
        kind, text = self.items[self.at]
        self.at += 1
        if kind == "string":
            return Node("literal", text[1:-1].replace("''", "'"))
        if kind == "number":
            return Node("literal", float(int(text, 16)) if "x" in text.lower() else float(text))
        if kind == "name":
            if text in _KEYWORDS:
                return Node("literal", _KEYWORDS[text])
            if self.peek() == "(":
                return Node("call", text, self.arguments())
            return Node("name", text)
        if text == "(":
            node = self.binary(0)
            self.expect(")")
            return node
        raise self.error(f"unexpected {text!r}")

    def postfix(self, node: Node) -> Node:
        while self.peek() in (".", "["):
            if self.take() == ".":
                kind, text = self.items[self.at] if self.at < len(self.items) else ("", "")
                if kind != "name":
                    raise self.error("a property name must follow '.'")
                self.at += 1
                node = Node("member", None, (node, Node("literal", text)))
            else:
                node = Node("member", None, (node, self.binary(0)))
                self.expect("]")
        return node

    def arguments(self) -> tuple[Node, ...]:
        self.expect("(")
        args: list[Node] = []
        while self.peek() != ")":
            if args:
                self.expect(",")
            args.append(self.binary(0))
        self.expect(")")
        return tuple(args)

    def peek(self) -> str | None:
        if self.at >= len(self.items):
            return None
        kind, text = self.items[self.at]
        return text if kind == "op" else None

    def take(self) -> str:
        self.at += 1
        return self.items[self.at - 1][1]

    def expect(self, op: str) -> None:
        if self.peek() != op:
            raise self.error(f"expected {op!r}")
        self.take()

    def error(self, message: str) -> ExpressionError:
        return ExpressionError(f"{message} in expression {self.text!r}")


def parse(text: str) -> Node:
    """The syntax tree of one expression (the text between ``${{`` and ``}}``)."""
    return _Parser(text).parse()


def walk(node: Node) -> Iterator[Node]:
    """The node and all its descendants."""
    yield node
    for child in node.children:
        yield from walk(child)
