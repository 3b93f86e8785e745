"""docs/faults.md stays true: every matrix row is there once, and every test it names exists.

The fault matrix is cited from code comments ("faults.md C6") and says, row by row, which test
checks each fault. A renamed or deleted test, or a row lost in an edit, would silently turn that
into fiction; these checks make it fail instead. A row that nothing checks must say "not yet".
"""
from __future__ import annotations

import ast
import re
from collections import Counter

from conftest import ROOT

DOC = ROOT / "docs" / "faults.md"
GROUPS = {"F": 11, "T": 7, "D": 5, "B": 5, "C": 10, "P": 6}
ROW_IDS = [f"{g}{i}" for g, n in GROUPS.items() for i in range(1, n + 1)]
ROW = re.compile(r"^\|\s*([FTDBCP]\d+)\s*\|")
TEST_REF = re.compile(r"tests/([\w/]+\.py)::(\w+)")


def table_rows() -> dict[str, list[str]]:
    """Row id -> the table lines that start with it (a list, so duplicates show)."""
    rows: dict[str, list[str]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m:
            rows.setdefault(m.group(1), []).append(line)
    return rows


def functions_in(path) -> set[str]:
    """Names of the functions defined in a test file, at module level or inside classes."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_every_matrix_row_appears_exactly_once():
    counts = Counter({rid: len(lines) for rid, lines in table_rows().items()})
    missing = [rid for rid in ROW_IDS if counts[rid] == 0]
    repeated = [rid for rid in ROW_IDS if counts[rid] > 1]
    unknown = sorted(set(counts) - set(ROW_IDS))
    assert not missing and not repeated and not unknown, (missing, repeated, unknown)


def test_every_named_test_exists():
    refs = TEST_REF.findall(DOC.read_text(encoding="utf-8"))
    assert refs, "docs/faults.md names no tests"
    defined: dict[str, set[str]] = {}
    wrong = []
    for file, name in refs:
        path = ROOT / "tests" / file
        if not path.is_file():
            wrong.append(f"tests/{file} (no such file)")
            continue
        if file not in defined:
            defined[file] = functions_in(path)
        if name not in defined[file]:
            wrong.append(f"tests/{file}::{name} (no such function)")
    assert not wrong, "docs/faults.md names tests that do not exist:\n" + "\n".join(sorted(set(wrong)))


def test_every_row_names_a_test_or_says_not_yet():
    bare = [rid for rid, lines in table_rows().items()
            if not any(TEST_REF.search(line) or "not yet" in line for line in lines)]
    assert not bare, f"rows with neither a test reference nor 'not yet': {bare}"
