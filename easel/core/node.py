"""How a node type is declared: one decorated function gives inputs, outputs, schema and checks.

@easel.node(category="math", outputs={"sum": "FLOAT"})
def Add(a: float = 0.0, b: float = easel.Input(1.0, ge=0, le=10)) -> dict:
    "Add two numbers."
    return {"sum": a + b}
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

import pydantic

from easel.core.context import Context
from easel.core.types import BOOLEAN, FLOAT, INT, STRING, VALUE_TYPES, Socket, SocketCheck

_MISSING: Any = inspect.Parameter.empty
ModelClass = type[pydantic.BaseModel]
RESERVED_OUTPUT = "ui"
# What the executor hands a node for parameters declared `hidden=` (ComfyUI's hidden inputs).
HIDDEN_INPUTS = ("workflow", "extra_pnginfo", "node_id")

Fingerprint = Callable[[Context, dict[str, Any]], str]
Check = Callable[[Context, dict[str, Any]], Iterable[tuple[str | None, str]] | None]
Needs = Callable[[Context, dict[str, Any]], Iterable[str] | None]


class NodeError(Exception):
    """A user-facing failure of a node, optionally about one of its inputs."""

    def __init__(self, message: str, input: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.input = input


class NodeDeclarationError(TypeError):
    """A node type is declared wrongly (a plugin author's mistake)."""


@dataclass
class InputInfo:
    """Extra facts about an input, given as its default: `steps: int = Input(20, ge=1)`."""

    default: Any = _MISSING
    ge: float | None = None
    le: float | None = None
    gt: float | None = None
    lt: float | None = None
    step: float | None = None
    choices: Iterable[Any] | Callable[[], Iterable[Any]] | None = None
    multiline: bool = False
    widget: str | None = None
    description: str = ""
    max_length: int | None = None
    lazy: bool = False
    as_list: bool = False


def Input(
    default: Any = _MISSING,
    *,
    ge: float | None = None,
    le: float | None = None,
    gt: float | None = None,
    lt: float | None = None,
    step: float | None = None,
    choices: Iterable[Any] | Callable[[], Iterable[Any]] | None = None,
    multiline: bool = False,
    widget: str | None = None,
    description: str = "",
    max_length: int | None = None,
    lazy: bool = False,
    as_list: bool = False,
) -> Any:
    """Declare an input's default, range, step, choices (a list, or a function for a list
    that changes, such as discovered model names), multiline text or a named widget
    ("seed", "image_upload"). `lazy=True`: the linked branch runs only when the node's
    `needs` function asks for it. `as_list=True`: the input receives a whole list output at
    once instead of the node running once per item."""
    return InputInfo(
        default,
        ge,
        le,
        gt,
        lt,
        step,
        choices,
        multiline,
        widget,
        description,
        max_length,
        lazy,
        as_list,
    )


@dataclass
class InputSpec:
    """One input of a node type."""

    name: str
    type: str
    required: bool
    default: Any
    info: InputInfo
    annotation: Any

    @property
    def is_value(self) -> bool:
        """A value input takes a literal (and may also be linked); others are links only."""
        return self.type in VALUE_TYPES

    def current_choices(self) -> list[Any] | None:
        choices = self.info.choices
        if choices is None:
            return None
        if callable(choices):
            return list(choices())
        return list(choices)


@dataclass
class NodeType:
    """Everything the engine knows about a node type."""

    type: str
    fn: Callable[..., Any]
    inputs: dict[str, InputSpec]
    outputs: dict[str, str]
    category: str = "misc"
    description: str = ""
    version: int = 1
    output_node: bool = False
    deterministic: bool = True
    fingerprint: Fingerprint | None = None
    check: Check | None = None
    wants_context: bool = False
    plugin: str = ""
    display_name: str = ""
    needs: Needs | None = None
    list_outputs: frozenset[str] = frozenset()
    hidden: tuple[str, ...] = ()
    output_depends: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # (output, socket type, check) for every output whose type has a check; set by the registry
    output_checks: tuple[tuple[str, str, SocketCheck], ...] = field(default=(), repr=False)
    literal_model: ModelClass = field(init=False, repr=False)
    value_defaults: dict[str, Any] = field(init=False, repr=False)
    lazy_inputs: frozenset[str] = field(init=False, repr=False)
    list_inputs: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.display_name = self.display_name or self.type
        self.value_defaults = {
            name: spec.default
            for name, spec in self.inputs.items()
            if spec.is_value and not spec.required
        }
        self.lazy_inputs = frozenset(n for n, s in self.inputs.items() if s.info.lazy)
        self.list_inputs = frozenset(n for n, s in self.inputs.items() if s.info.as_list)
        fields: dict[str, Any] = {}
        for spec in self.inputs.values():
            if not spec.is_value:
                continue
            info = spec.info
            # Required inputs are checked by the graph (they may be linked): None here.
            default = None if spec.required else spec.default
            if not spec.required and spec.default is None:
                annotation: Any = spec.annotation | None
            else:
                annotation = spec.annotation
            fields[spec.name] = (
                annotation,
                pydantic.Field(
                    default,
                    ge=info.ge,
                    le=info.le,
                    gt=info.gt,
                    lt=info.lt,
                    max_length=info.max_length,
                ),
            )
        config = pydantic.ConfigDict(extra="ignore", strict=False)
        model_name = "".join(ch for ch in self.type if ch.isalnum()) + "Inputs"
        self.literal_model = pydantic.create_model(model_name, __config__=config, **fields)

    # -- calling -------------------------------------------------------------------
    def call(self, ctx: Context, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Run the function and return its outputs as a dict (plus "ui" when given), each
        output checked against its declared socket type (a NodeError blaming this node)."""
        result = self.fn(ctx=ctx, **kwargs) if self.wants_context else self.fn(**kwargs)
        outputs = self.normalise_result(result)
        if self.output_checks:
            self.check_outputs(outputs)
        return outputs

    def check_outputs(self, outputs: Mapping[str, Any]) -> None:
        """Raise NodeError when an output is not of its declared socket type."""
        for name, socket, is_valid in self.output_checks:
            value = outputs[name]
            if name in self.list_outputs:
                if not isinstance(value, list):
                    raise NodeError(
                        f"output {name!r} is declared a list of {socket}, but the "
                        f"node returned {_describe(value)}"
                    )
                bad = next((v for v in value if not is_valid(v)), _MISSING)
                if bad is not _MISSING:
                    raise NodeError(
                        f"output {name!r} should be a list of {socket}, but an item "
                        f"is {_describe(bad)}"
                    )
            elif not is_valid(value):
                raise NodeError(
                    f"output {name!r} should be {socket}, but the node returned {_describe(value)}"
                )

    def normalise_result(self, result: Any) -> dict[str, Any]:
        """Outputs as a dict. A dict result is read as {output: value} when its keys are the
        declared outputs (plus "ui"); a single-output node may return the value itself,
        even when that value is a dict (a LATENT is), unless the dict has a "ui" key or a key
        that looks like a misspelt output name."""
        names = list(self.outputs)
        if isinstance(result, Mapping):
            keys = set(result)
            if keys - {RESERVED_OUTPUT} == set(names):
                return dict(result)
            if len(names) != 1:
                raise NodeError(
                    f"node function returned outputs {sorted(map(str, keys))}, declared {names}"
                )
            strings = [k for k in keys if isinstance(k, str)]
            if RESERVED_OUTPUT in keys or difflib.get_close_matches(names[0], strings, 1, 0.8):
                raise NodeError(
                    f"node function returned outputs {sorted(strings)}, declared "
                    f"{names} (return {{{names[0]!r}: value}})"
                )
        if len(names) == 1:
            return {names[0]: result}
        if not names:
            if result is not None:
                raise NodeError("node declares no outputs but returned a value")
            return {}
        if isinstance(result, tuple) and len(result) == len(names):
            return dict(zip(names, result, strict=True))
        raise NodeError(f"node function must return a dict with outputs {names}")

    # -- validation ----------------------------------------------------------------
    def default_problems(self) -> list[tuple[str, str]]:
        """Defaults that break their own input's range or fixed choices: [(input, reason)]."""
        defaults = {
            name: spec.default
            for name, spec in self.inputs.items()
            if spec.is_value and not spec.required and spec.default is not None
        }
        _, errors = self.validate_literals(defaults, dynamic_choices=False)
        return [(name, f"default {reason}") for name, reason in errors]

    def validate_literals(
        self, values: dict[str, Any], dynamic_choices: bool = True
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Check literal values against the declaration: (clean values, [(input, reason)])."""
        errors: list[tuple[str, str]] = []
        try:
            model = self.literal_model.model_validate(values)
            clean = {name: getattr(model, name) for name in values if name in self.inputs}
        except pydantic.ValidationError as exc:
            clean = {}
            for err in exc.errors(include_url=False):
                loc = err.get("loc") or ("?",)
                name = str(loc[0])
                got = values.get(name)
                errors.append((name, f"{_pydantic_reason(err)} (got {_short_repr(got)})"))
        failed = {name for name, _ in errors}
        for name, value in values.items():
            spec = self.inputs.get(name)
            if spec is None or name in failed:
                continue
            if not dynamic_choices and callable(spec.info.choices):
                continue
            choices = spec.current_choices()
            if choices is not None and value not in choices:
                shown = ", ".join(repr(c) for c in choices[:20]) or "none available"
                errors.append((name, f"{value!r} is not one of: {shown}"))
        return clean, errors

    # -- schema --------------------------------------------------------------------
    def schema(self) -> dict[str, Any]:
        """The JSON description the editor draws widgets from."""
        props = self.literal_model.model_json_schema().get("properties", {})
        inputs = {}
        for name, spec in self.inputs.items():
            entry: dict[str, Any] = {"type": spec.type, "required": spec.required}
            if spec.is_value:
                prop = props.get(name, {})
                for key in (
                    "minimum",
                    "maximum",
                    "exclusiveMinimum",
                    "exclusiveMaximum",
                    "maxLength",
                ):
                    if key in prop:
                        entry[key] = prop[key]
                if not spec.required:
                    entry["default"] = spec.default
            else:
                entry["link_only"] = True
            info = spec.info
            choices = spec.current_choices()
            if choices is not None:
                entry["choices"] = choices
            if info.step is not None:
                entry["step"] = info.step
            if info.multiline:
                entry["multiline"] = True
            if info.widget:
                entry["widget"] = info.widget
            if info.description:
                entry["description"] = info.description
            if info.lazy:
                entry["lazy"] = True
            if info.as_list:
                entry["as_list"] = True
            inputs[name] = entry
        schema = {
            "type": self.type,
            "display_name": self.display_name,
            "version": self.version,
            "category": self.category,
            "description": self.description,
            "inputs": inputs,
            "outputs": dict(self.outputs),
            "output_node": self.output_node,
            "deterministic": self.deterministic,
            "plugin": self.plugin,
        }
        if self.list_outputs:
            schema["list_outputs"] = sorted(self.list_outputs)
        if self.hidden:
            schema["hidden"] = list(self.hidden)
        return schema


def _describe(value: Any) -> str:
    kind = type(value).__name__
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"a {kind} of shape {tuple(shape)}"
    if isinstance(value, Mapping):
        return f"a {kind} with keys {sorted(map(str, value))[:8]}"
    return f"a {kind} ({_short_repr(value, 40)})"


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _pydantic_reason(err: Any) -> str:
    ctx = err.get("ctx") or {}
    kind = err.get("type", "")
    if kind == "greater_than_equal":
        return f"must be >= {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"must be <= {ctx.get('le')}"
    if kind == "greater_than":
        return f"must be > {ctx.get('gt')}"
    if kind == "less_than":
        return f"must be < {ctx.get('lt')}"
    return str(err.get("msg", "invalid value")).replace("Input should be", "must be")


# -- turning annotations into socket types ----------------------------------------------
_PY_TO_SOCKET = {int: INT, float: FLOAT, str: STRING, bool: BOOLEAN}


def _socket_of(annotation: Any, where: str) -> tuple[str, Any, bool, list[Any] | None]:
    """(socket type, pydantic annotation, optional?, literal choices) of an annotation."""
    optional = False
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise NodeDeclarationError(f"{where}: unions other than `X | None` are not supported")
        optional = True
        annotation = args[0]
        origin = get_origin(annotation)
    if origin is typing.Annotated:
        base, *extras = get_args(annotation)
        for extra in extras:
            if isinstance(extra, Socket):
                return extra.name, Any, optional, None
        socket, _, _, choices = _socket_of(base, where)
        return socket, annotation, optional, choices
    if origin is Literal:
        choices = list(get_args(annotation))
        kinds = {type(c) for c in choices}
        if len(kinds) != 1 or next(iter(kinds)) not in _PY_TO_SOCKET:
            raise NodeDeclarationError(f"{where}: Literal choices must share one simple type")
        return _PY_TO_SOCKET[next(iter(kinds))], annotation, optional, choices
    if annotation in _PY_TO_SOCKET:
        return _PY_TO_SOCKET[annotation], annotation, optional, None
    if isinstance(annotation, str) and annotation.upper() == annotation:
        return annotation, Any, optional, None
    raise NodeDeclarationError(
        f"{where}: annotate with int, float, str, bool, a Literal, or a socket type "
        f"(easel.socket_type('NAME')), not {annotation!r}"
    )


def _output_depends(
    declared: Mapping[str, Iterable[str]],
    inputs: Mapping[str, InputSpec],
    outputs: Mapping[str, str],
    where: str,
) -> dict[str, tuple[str, ...]]:
    depends: dict[str, tuple[str, ...]] = {}
    for output, names in declared.items():
        if output not in outputs:
            raise NodeDeclarationError(
                f"{where}: output_depends names unknown output "
                f"{output!r} (outputs: {list(outputs)})"
            )
        if isinstance(names, str):
            raise NodeDeclarationError(
                f"{where}: output_depends[{output!r}] is a list of input names, not a string"
            )
        names = tuple(names)
        unknown = [n for n in names if n not in inputs]
        if unknown:
            raise NodeDeclarationError(
                f"{where}: output_depends[{output!r}] names unknown "
                f"inputs {unknown} (inputs: {list(inputs)})"
            )
        depends[output] = names
    return depends


def _output_type(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    socket, _, _, _ = _socket_of(value, where)
    return socket


def node(
    fn: Callable[..., Any] | None = None,
    *,
    type: str | None = None,
    category: str = "misc",
    description: str | None = None,
    version: int = 1,
    outputs: Mapping[str, Any] | None = None,
    output_node: bool = False,
    deterministic: bool = True,
    fingerprint: Fingerprint | None = None,
    check: Check | None = None,
    display_name: str | None = None,
    needs: Needs | None = None,
    list_outputs: Iterable[str] = (),
    hidden: Iterable[str] = (),
    output_depends: Mapping[str, Iterable[str]] | None = None,
) -> Any:
    """Declare a node type from a function; usable bare (`@node`) or with options.

    Parameters become inputs (a parameter named `ctx` receives the `Context`); their
    annotations give socket types; `outputs` maps output names to socket types (by default
    one output named after the return annotation's type). The function returns a dict of
    outputs, one value for a single output, or a tuple in declared order; output nodes may
    add a JSON-able "ui" entry (files written, scores) that becomes part of the run's results.

    `display_name` is what the editor shows (default: the type name). `needs(ctx, inputs)`
    names the lazy inputs the node wants given its other inputs. `list_outputs` are outputs
    the function returns as Python lists (consumers run once per item). `hidden` parameters
    ("workflow", "extra_pnginfo", "node_id") are filled by the executor. `output_depends`
    maps an output to the only inputs it depends on, so its consumers' cache keys ignore the
    node's other inputs.
    """

    def declare(func: Callable[..., Any]) -> NodeType:
        name = type or func.__name__
        where = f"node {name!r}"
        hints = typing.get_type_hints(func, include_extras=True)
        signature = inspect.signature(func)
        inputs: dict[str, InputSpec] = {}
        wants_context = False
        hidden_names = tuple(hidden)
        for hidden_name in hidden_names:
            if hidden_name not in HIDDEN_INPUTS:
                raise NodeDeclarationError(
                    f"{where}: unknown hidden input {hidden_name!r} "
                    f"(known: {', '.join(HIDDEN_INPUTS)})"
                )
            if hidden_name not in signature.parameters:
                raise NodeDeclarationError(
                    f"{where}: hidden input {hidden_name!r} needs a parameter of that name"
                )
        for param in signature.parameters.values():
            if param.name == "ctx":
                wants_context = True
                continue
            if param.name in hidden_names:
                continue
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise NodeDeclarationError(f"{where}: *args/**kwargs are not inputs")
            if param.name not in hints:
                raise NodeDeclarationError(f"{where}: input {param.name!r} needs a type annotation")
            socket, annotation, optional, literal_choices = _socket_of(
                hints[param.name], f"{where}, input {param.name!r}"
            )
            info = (
                param.default if isinstance(param.default, InputInfo) else InputInfo(param.default)
            )
            if literal_choices is not None and info.choices is None:
                info.choices = literal_choices
            default = info.default
            required = default is _MISSING
            if optional and required:
                default, required = None, False
            if annotation is Any and socket in VALUE_TYPES:
                annotation = {INT: int, FLOAT: float, STRING: str, BOOLEAN: bool}[socket]
            inputs[param.name] = InputSpec(
                param.name, socket, required, None if required else default, info, annotation
            )
        if outputs is not None:
            out = {
                key: _output_type(val, f"{where}, output {key!r}") for key, val in outputs.items()
            }
        else:
            ret = hints.get("return")
            if ret is None or ret is types.NoneType:
                out = {}
            else:
                socket = _output_type(ret, f"{where}, return annotation")
                out = {socket.lower(): socket}
        if RESERVED_OUTPUT in out:
            raise NodeDeclarationError(f"{where}: the output name 'ui' is reserved")
        lists = frozenset(list_outputs)
        if lists - set(out):
            raise NodeDeclarationError(
                f"{where}: list_outputs {sorted(lists - set(out))} are "
                f"not outputs (outputs: {list(out)})"
            )
        depends = _output_depends(output_depends or {}, inputs, out, where)
        lazy = [n for n, spec in inputs.items() if spec.info.lazy]
        if lazy and needs is None:
            raise NodeDeclarationError(
                f"{where}: lazy inputs {lazy} need a `needs` function "
                "that says when the node wants them"
            )
        doc = description if description is not None else inspect.getdoc(func) or ""
        return NodeType(
            type=name,
            fn=func,
            inputs=inputs,
            outputs=out,
            category=category,
            description=doc,
            version=version,
            output_node=output_node,
            deterministic=deterministic,
            fingerprint=fingerprint,
            check=check,
            wants_context=wants_context,
            display_name=display_name or name,
            needs=needs,
            list_outputs=lists,
            hidden=hidden_names,
            output_depends=depends,
        )

    if fn is not None:
        return declare(fn)
    return declare
