"""Command-line flags generated from a pydantic model, so every default and help text is defined once.

`typer_flags(Model, ...)` gives a typer command one `--flag` per field (the field's type, default
and description); `add_argparse(parser, Model)` gives an argparse parser the same flags (for
`python -m roadwork.train` on machines without typer). `from_flags(Model, values)` builds the model
and turns a validation error into one line naming the flags.

Typer itself is imported only by `typer_flags`, so the argparse path never needs it.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from typing import Any, Callable, Literal, Optional, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

M = TypeVar("M", bound=BaseModel)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def scalar_of(annotation: Any) -> tuple[type, bool, tuple[str, ...] | None]:
    """(scalar type, is a list, choices of a Literal) of a field's annotation; `X | None` is X."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return scalar_of(args[0])
    if typing.get_origin(annotation) is list:
        return scalar_of(args[0])[0], True, None
    if typing.get_origin(annotation) is Literal:
        return type(args[0]), False, tuple(str(a) for a in args)
    return annotation, False, None


def default_of(field: FieldInfo) -> Any:
    return field.get_default(call_default_factory=True)


def typer_flags(model: type[BaseModel], **custom: dict[str, Any]) -> Callable[[Callable], Callable]:
    """A decorator giving `fn(**values)` one typer option per field of `model`, in field order.

    `custom[name]` adds to or replaces that option's settings: `names` (extra flags such as "-d"),
    `required=True` (no default on the command line), or any `typer.Option` keyword (`callback`,
    `help`, `min`, ...). A bool defaulting to True gets `--x/--no-x`, one defaulting to False `--x`;
    a list is a repeatable flag; a Literal is a choice."""
    import typer

    unknown = set(custom) - set(model.model_fields)
    if unknown:
        raise TypeError(f"typer_flags({model.__name__}): no such fields {sorted(unknown)}")
    params = []
    for name, field in model.model_fields.items():
        kind, many, choices = scalar_of(field.annotation)
        extra = dict(custom.get(name, {}))
        names = extra.pop("names", ())
        default = ... if extra.pop("required", False) else default_of(field)
        if kind is bool:
            decls = [flag(name) + ("/--no-" + name.replace("_", "-") if default is True else "")]
        else:
            decls = [flag(name)]
        extra.setdefault("help", field.description)
        if choices:  # typer's choices are an Enum; from_flags hands the model its values
            kind = enum.Enum(f"{model.__name__}_{name}", {c: c for c in choices}, type=str)
            default = default if default in (None, ...) else kind(default)
        annotation: Any = list[kind] if many else kind
        if default is None or (many and default is not ...):
            annotation, default = Optional[annotation], (None if many else default)
        option = typer.Option(default, *decls, *names, **extra)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))

    def wrap(fn: Callable) -> Callable:
        fn.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
        fn.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
        return fn

    return wrap


def add_argparse(parser: Any, model: type[BaseModel]) -> None:
    """argparse flags for every field of `model` (bools as --x/--no-x, lists repeatable)."""
    import argparse

    for name, field in model.model_fields.items():
        kind, many, choices = scalar_of(field.annotation)
        default = default_of(field)
        if kind is bool:
            parser.add_argument(flag(name), action=argparse.BooleanOptionalAction, default=default,
                                help=field.description)
        elif many:
            parser.add_argument(flag(name), action="append", type=kind, default=None, help=field.description)
        else:
            parser.add_argument(flag(name), type=kind, default=default, choices=choices, help=field.description)


def from_flags(model: type[M], values: dict[str, Any]) -> M:
    """`model` from parsed flags (a list flag never given is the field's default). A value the model
    refuses raises ValueError with one line naming each flag and what is wrong with it."""
    fields = model.model_fields
    kw = {k: v.value if isinstance(v, enum.Enum) else v for k, v in values.items()
          if not (v is None and k in fields and scalar_of(fields[k].annotation)[1])}
    try:
        return model(**kw)
    except ValidationError as e:
        parts = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"])
            msg = str(err.get("ctx", {}).get("error", err["msg"])) if err["type"] == "value_error" else err["msg"]
            parts.append(msg if msg.startswith("--") else f"{flag(where) if where in fields else where}: {msg}")
        raise ValueError("; ".join(parts)) from None
