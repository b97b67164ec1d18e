"""Every statement is parametrized: no SQL is built from strings in Python.

The library's SQL lives in ``sql/*.sql`` with bind parameters; an identifier, where one is needed (COPY into a
staging table, CREATE DATABASE), goes through ``psycopg.sql.Identifier``. This test reads the source of
``catalogue_tagger`` and ``dagster_defs`` and fails on any f-string, ``%`` formatting, ``str.format`` or
concatenation whose literal text contains SQL.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("catalogue_tagger", "dagster_defs")
SQL = re.compile(
    r"\b(SELECT|INSERT\s+INTO|UPDATE|DELETE\s+FROM|CREATE\s+(TABLE|INDEX|DATABASE|VIEW|EXTENSION|TEMP)|DROP|ALTER"
    r"|COPY|TRUNCATE|GRANT|VACUUM|EXPLAIN)\b"
)


def _literal_text(node: ast.AST) -> str:
    """The literal string parts of an expression (f-string pieces, string constants), joined."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return " ".join(_literal_text(v) for v in node.values)
    if isinstance(node, ast.BinOp):
        return _literal_text(node.left) + " " + _literal_text(node.right)
    return ""


def _is_dynamic(node: ast.AST) -> bool:
    return not (isinstance(node, ast.Constant) and isinstance(node.value, str))


def _built_sql(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        text = ""
        if isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.FormattedValue) for v in node.values):
            text = _literal_text(node)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
            if _is_dynamic(node.left) or _is_dynamic(node.right):
                text = _literal_text(node)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            text = _literal_text(node.func.value)  # "…".format(…); psycopg.sql.SQL("…").format(…) is a Call, not a str
        if text and SQL.search(text):
            yield node.lineno, text.strip()[:80]


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_the_check_sees_the_packages() -> None:
    assert len(_sources()) > 20


@pytest.mark.parametrize("snippet", [
    'sql = f"SELECT * FROM tracks WHERE uri = \'{uri}\'"',
    'sql = "DELETE FROM tracks WHERE uri = \'%s\'" % uri',
    'sql = "UPDATE tracks SET status = {}".format(status)',
    'sql = "COPY " + table + " FROM STDIN"',
])
def test_the_check_catches_built_sql(snippet: str) -> None:
    assert list(_built_sql(ast.parse(snippet)))


def test_no_sql_is_built_from_strings() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {text}"
        for path in _sources()
        for line, text in _built_sql(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    ]
    assert not offenders, "SQL built in Python (use sql/*.sql with binds, or psycopg.sql):\n" + "\n".join(offenders)
