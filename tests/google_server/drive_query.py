"""A parser for the Drive v3 ``q`` search language (the subset Lessonbot needs).

Supported: ``name``/``mimeType`` with ``=``, ``!=``, ``contains``;
``'<id>' in parents``; ``trashed``/``starred`` ``=``/``!=`` ``true|false``;
``modifiedTime``/``createdTime`` comparisons; ``and``, ``or``, ``not`` and
parentheses. Anything else raises :class:`QueryError` (Drive answers 400).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]

TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^'\\]|\\.)*')|(?P<op><=|>=|!=|=|<|>)|(?P<paren>[()])|(?P<word>[A-Za-z_][A-Za-z0-9_]*))"
)
COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
STRING_FIELDS = {"name", "mimeType", "fullText"}
BOOL_FIELDS = {"trashed", "starred"}
TIME_FIELDS = {"modifiedTime", "createdTime"}


class QueryError(ValueError):
    """The query is not valid (or not supported by the fake)."""


def tokenize(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs of a query."""
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = TOKEN.match(text, pos)
        if match is None:
            raise QueryError(f"Invalid query near {text[pos:]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


def unquote(literal: str) -> str:
    """The value of a quoted string literal."""
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise QueryError("Unexpected end of query")
        self.pos += 1
        return token

    def expression(self) -> Predicate:
        left = self.term()
        while (token := self.peek()) and token[0] == "word" and token[1].lower() in ("and", "or"):
            self.take()
            right = self.term()
            left = _combine(token[1].lower(), left, right)
        return left

    def term(self) -> Predicate:
        kind, text = self.take()
        if kind == "word" and text.lower() == "not":
            inner = self.term()
            return lambda item: not inner(item)
        if kind == "paren" and text == "(":
            inner = self.expression()
            if self.take() != ("paren", ")"):
                raise QueryError("Missing closing parenthesis")
            return inner
        if kind == "string":
            return self._membership(unquote(text))
        if kind == "word":
            return self._comparison(text)
        raise QueryError(f"Unexpected {text!r}")

    def _membership(self, value: str) -> Predicate:
        word, field = self.take(), self.take()
        if word[1].lower() != "in" or field[1] != "parents":
            raise QueryError("Only \"'<id>' in parents\" membership is supported")
        return lambda item: value in item.get("parents", [])

    def _comparison(self, field: str) -> Predicate:
        kind, operator = self.take()
        if field in STRING_FIELDS and kind == "word" and operator == "contains":
            value = unquote(self._expect("string"))
            return lambda item: value.lower() in str(item.get(field, "")).lower()
        if kind != "op":
            raise QueryError(f"Invalid operator {operator!r} for {field}")
        if field in BOOL_FIELDS:
            flag = self._expect("word").lower() == "true"
            return lambda item: COMPARATORS[operator](bool(item.get(field, False)), flag)
        if field in STRING_FIELDS | TIME_FIELDS and operator in COMPARATORS:
            value = unquote(self._expect("string"))
            return lambda item: COMPARATORS[operator](str(item.get(field, "")), value)
        raise QueryError(f"Unsupported query term {field} {operator}")

    def _expect(self, kind: str) -> str:
        token_kind, text = self.take()
        if token_kind != kind:
            raise QueryError(f"Expected {kind}, got {text!r}")
        return text


def _combine(operator: str, left: Predicate, right: Predicate) -> Predicate:
    if operator == "and":
        return lambda item: left(item) and right(item)
    return lambda item: left(item) or right(item)


def compile_query(text: str) -> Predicate:
    """A predicate over file resources for the Drive query ``text``."""
    parser = _Parser(text)
    predicate = parser.expression()
    if parser.peek() is not None:
        raise QueryError(f"Unexpected {parser.peek()!r}")
    return predicate
