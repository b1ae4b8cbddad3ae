"""MathExpression: a formula over numbered inputs a, b, c, ... (ComfyUI's ComfyMathExpression),
evaluated by a small walker over Python's AST, never by eval.

The templates write Python-style formulas: `(a + b) / 2000`, `a % b if b > 0 else 0`,
`4 * ceil((a - 1) / 4) + 1`, `(a % 4 == 1) and (b > 0)`. Parsing with `ast.parse(mode="eval")`
gives that syntax exactly; the walker then allows only numbers, the input letters, pi and e,
arithmetic, comparisons, and/or/not, `x if c else y`, and the functions in FUNCTIONS. A
library (simpleeval) would do the same with a dependency more and its own wider defaults;
this walker is short, and its limits are the node's: the expression's length, the size of a
power, no attribute access, no names but the letters.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Annotated, Any

from easel.core.node import Input, NodeError, node
from easel.core.types import ANY, Socket

LETTERS = "abcdefgh"  # ComfyUI grows up to z; the templates use a to d
MAX_EXPRESSION = 1000
MAX_POWER_BITS = 4096  # an integer power's result size; floats overflow to an error instead
CONSTANTS = {"pi": math.pi, "e": math.e, "True": True, "False": False}
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "min": min,
    "max": max,
    "round": round,
    "int": int,
    "float": float,
    "floor": math.floor,
    "ceil": math.ceil,
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "log2": math.log2,
    "log10": math.log10,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "atan2": math.atan2,
    "hypot": math.hypot,
    "trunc": math.trunc,
    "sum": sum,
}
BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


class ExpressionError(ValueError):
    """The expression is not allowed or cannot be computed."""


def _power(base: Any, exponent: Any) -> Any:
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent > 0
        and abs(base).bit_length() * exponent > MAX_POWER_BITS
    ):
        raise ExpressionError(f"{base} ** {exponent} is too large")
    return base**exponent


def evaluate(expression: str, names: dict[str, Any]) -> Any:
    """The value of `expression` with `names` bound (see the module docstring)."""
    if len(expression) > MAX_EXPRESSION:
        raise ExpressionError(
            f"the expression is {len(expression)} characters, over {MAX_EXPRESSION}"
        )
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"not a valid expression: {exc.msg}") from None

    def walk(item: ast.AST) -> Any:
        if isinstance(item, ast.Expression):
            return walk(item.body)
        if isinstance(item, ast.Constant) and isinstance(item.value, int | float):
            return item.value
        if isinstance(item, ast.Name):
            if item.id == "values":  # every linked input, in order (as ComfyUI's node)
                return [names[letter] for letter in LETTERS if letter in names]
            if item.id in names:
                return names[item.id]
            if item.id in CONSTANTS:
                return CONSTANTS[item.id]
            if item.id in LETTERS:
                raise ExpressionError(f"{item.id!r} is used but its input is not linked")
            raise ExpressionError(
                f"unknown name {item.id!r} (inputs: {', '.join(names)}; constants: pi, e)"
            )
        if isinstance(item, ast.BinOp) and type(item.op) in BINARY:
            left, right = walk(item.left), walk(item.right)
            if isinstance(item.op, ast.Pow):
                return _power(left, right)
            return BINARY[type(item.op)](left, right)
        if isinstance(item, ast.UnaryOp):
            value = walk(item.operand)
            if isinstance(item.op, ast.USub):
                return -value
            if isinstance(item.op, ast.UAdd):
                return +value
            if isinstance(item.op, ast.Not):
                return not value
        if isinstance(item, ast.BoolOp):
            if isinstance(item.op, ast.And):
                result: Any = True
                for part in item.values:
                    result = walk(part)
                    if not result:
                        return result
                return result
            for part in item.values:
                result = walk(part)
                if result:
                    return result
            return result
        if isinstance(item, ast.Compare) and all(type(op) in COMPARE for op in item.ops):
            left = walk(item.left)
            for op, comparator in zip(item.ops, item.comparators, strict=True):
                right = walk(comparator)
                if not COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(item, ast.IfExp):
            return walk(item.body) if walk(item.test) else walk(item.orelse)
        if (
            isinstance(item, ast.Call)
            and isinstance(item.func, ast.Name)
            and item.func.id in (*FUNCTIONS, "pow")
            and not item.keywords
        ):
            args = [walk(arg) for arg in item.args]
            if item.func.id == "pow":
                if len(args) != 2:
                    raise ExpressionError("pow takes two numbers")
                return _power(*args)
            return FUNCTIONS[item.func.id](*args)
        raise ExpressionError(
            f"{ast.unparse(item)!r} is not allowed (numbers, inputs "
            f"{', '.join(LETTERS)}, arithmetic, comparisons, and/or/not, "
            f"'x if c else y', and {', '.join(FUNCTIONS)})"
        )

    try:
        return walk(tree)
    except ExpressionError:
        raise
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise ExpressionError(f"cannot compute: {exc}") from None


@node(category="values", outputs={"float": float, "int": int, "bool": bool})
def MathExpression(
    expression: str = Input("a + b"),
    a: float | None = None,
    b: float | None = None,
    c: float | None = None,
    d: float | None = None,
    e: float | None = None,
    f: float | None = None,
    g: float | None = None,
    h: float | None = None,
) -> tuple[float, int, bool]:
    """A formula over the linked inputs a ... h (numbers or booleans; `values` is all of them):
    arithmetic (+ - * / // % **), comparisons, and/or/not, `x if c else y`, pi, e and abs,
    min, max, sum, round, pow, floor, ceil, sqrt, exp, log, sin, cos, ... (ComfyUI's
    ComfyMathExpression). The result as a float, an int (truncated) and a boolean (not 0)."""
    values = dict(zip(LETTERS, (a, b, c, d, e, f, g, h), strict=True))
    names = {letter: value for letter, value in values.items() if value is not None}
    try:
        if not expression.strip():
            raise ExpressionError("the expression is empty")
        result = evaluate(expression, names)
        if not isinstance(result, int | float):
            raise ExpressionError(f"the result is not a number: {result!r}")
        if not math.isfinite(result):
            raise ExpressionError(f"the result {result!r} is not a finite number")
        return float(result), int(result), bool(result)
    except ExpressionError as exc:
        raise NodeError(str(exc), "expression") from None
    except OverflowError as exc:  # an integer result too large for a float
        raise NodeError(f"the result is too large: {exc}", "expression") from None


@node(category="values", outputs={"float": float, "int": int})
def ConvertNumber(value: Annotated[Any, Socket(ANY)]) -> tuple[float, int]:
    """An int, float, boolean or numeric text as a float and an int (the int of a float is
    truncated; of a text, the text read as an integer when it is one) (ComfyUI's
    ComfyNumberConvert)."""
    if isinstance(value, bool):
        return float(value), int(value)
    if isinstance(value, int):
        return float(value), value
    if isinstance(value, float):
        as_float, as_int = value, None
    elif isinstance(value, str):
        text = value.strip()
        try:
            as_float = float(text)
        except ValueError:
            raise NodeError(f"cannot read {value!r} as a number", "value") from None
        try:
            as_int = int(text)
        except ValueError:
            as_int = None
    else:
        raise NodeError(
            f"expected an int, float, boolean or text, got {type(value).__name__}", "value"
        )
    if not math.isfinite(as_float):
        raise NodeError(f"{value!r} is not a finite number", "value")
    return as_float, int(as_float) if as_int is None else as_int


NODES = [MathExpression, ConvertNumber]
