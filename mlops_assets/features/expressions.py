"""Derived-feature expressions: arithmetic over columns, checked when the config loads, fast to apply.

``DataFrame.eval`` re-parses its expression on every call (about 1 ms each), which
dominated scoring one record. Here an expression is parsed once, refused at load
time if it uses anything but column names, numbers, arithmetic, comparisons and a
few numpy functions, and evaluated on numpy arrays.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from mlops_assets.errors import PlatformError

FUNCTIONS = {"log": np.log, "log1p": np.log1p, "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs,
             "minimum": np.minimum, "maximum": np.maximum}
_ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Name, ast.Load, ast.Constant, ast.Call,
            ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub, ast.UAdd,
            ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)


class ExpressionError(PlatformError, ValueError):
    """An expression that is not plain arithmetic over known columns."""


def expression_columns(expression: str) -> set[str]:
    """The column names an expression reads; ExpressionError if it does anything else."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"{expression!r} is not an expression: {exc.msg}") from exc
    columns: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise ExpressionError(f"{expression!r} uses {type(node).__name__}; only arithmetic, comparisons, "
                                  f"numbers, column names and {sorted(FUNCTIONS)} are allowed")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
                raise ExpressionError(f"{expression!r}: only {sorted(FUNCTIONS)} may be called, positionally")
        elif isinstance(node, ast.Name) and node.id not in FUNCTIONS:
            columns.add(node.id)
        elif isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)):
            raise ExpressionError(f"{expression!r}: constant {node.value!r} is not a number")
    return columns


@lru_cache(maxsize=256)
def _compiled(expression: str):
    expression_columns(expression)  # never evaluate what was not checked
    return compile(expression, "<derived feature>", "eval")


def evaluate(expression: str, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """The expression over float arrays; a division by zero gives inf, which the caller treats as missing."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.asarray(eval(_compiled(expression), {"__builtins__": {}, **FUNCTIONS}, dict(columns)), dtype=float)
