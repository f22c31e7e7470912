"""Command options made from a request model's fields, so that a field added to the
model (``proto.rest``) appears on its ``create`` command with no CLI edit.

Each field becomes an option named after it (``ip_range`` → ``--ip-range``), its help
the field's description, its type the field's in command-line terms:

    str, a Literal, an address    ``--x TEXT`` (the controller validates it: a bad value
                                  is its one-line 422, as for every other request)
    int                           ``--x INTEGER``
    bool                          ``--x/--no-x``
    list, tuple, set              ``--x`` repeated
    dict                          ``--x KEY=VALUE`` repeated
    a model (e.g. ``dns``)        its fields, each as above: ``--dns-nameservers``…,
                                  sent as one object when any of them is given

A :class:`Rename` keeps a flag a user already knows (``--uplink-for HOST=LINK`` for
``uplinks``) or makes a field the positional argument. Typer reads a command's
parameters from its ``__signature__``, which is all that is generated here: the command
receives the body (only what was given) and its own, hand-written, parameters.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .errors import CliError


@dataclass(frozen=True)
class Rename:
    """How a field differs on the command line from its generated option."""

    #: the option's flag, e.g. ``--uplink-for`` (default: the field's name, dashed)
    flag: str | None = None
    #: a dict field's item, e.g. ``HOST=LINK`` (default ``KEY=VALUE``)
    metavar: str | None = None
    #: the field is a positional argument of this name instead of an option
    argument: str | None = None


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """``tp`` without Annotated and without ``| None``; whether None was allowed."""
    optional = False
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            rest = [a for a in get_args(tp) if a is not type(None)]
            optional = optional or len(rest) < len(get_args(tp))
            if len(rest) != 1:
                return str, optional  # a union of several types: text, the server decides
            tp = rest[0]
        else:
            return tp, optional


def _scalar(tp: Any) -> type:
    """The command-line type of one value: bool, int, float or (anything else) str."""
    tp, _ = _unwrap(tp)
    return tp if tp in (bool, int, float) else str


@dataclass(frozen=True)
class FieldOption:
    """One field of the model as one parameter of the command."""

    name: str
    field: FieldInfo
    rename: Rename
    #: where the value goes in the body: (field,) or, in a nested model, (field, sub)
    path: tuple[str, ...] = ()

    @property
    def kind(self) -> Literal["scalar", "list", "dict"]:
        origin = get_origin(_unwrap(self.field.annotation)[0])
        if origin in (list, tuple, set, frozenset):
            return "list"
        if origin is dict:
            return "dict"
        return "scalar"

    @property
    def flag(self) -> str:
        return self.rename.flag or f"--{self.name.replace('_', '-')}"

    @property
    def metavar(self) -> str:
        return self.rename.metavar or "KEY=VALUE"

    def help(self) -> str:
        tp, _ = _unwrap(self.field.annotation)
        text = self.field.description or ""
        if get_origin(tp) is Literal and not text:
            choices = [str(c) for c in get_args(tp)]
            text = f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else ""
        if self.kind == "list":
            text += " (repeatable)"
        elif self.kind == "dict":
            text += f" ({self.metavar}, repeatable)"
        return text.strip()

    def parameter(self) -> inspect.Parameter:
        tp, optional = _unwrap(self.field.annotation)
        required = self.field.is_required()
        default: Any = None if required else self.field.get_default(call_default_factory=True)
        info: Any
        if self.rename.argument:
            info = typer.Argument(help=self.help(), metavar=self.rename.argument)
            typ: Any = _scalar(tp)
        elif self.kind == "list":
            typ = list[_scalar(get_args(tp)[0] if get_args(tp) else str)]  # type: ignore[misc]
            info = typer.Option(self.flag, help=self.help())
            default = None
        elif self.kind == "dict":
            typ = list[str]
            info = typer.Option(self.flag, help=self.help(), metavar=self.metavar)
            default = None
        elif _scalar(tp) is bool:
            typ = bool
            flag = self.flag.removeprefix("--")
            info = typer.Option(f"--{flag}/--no-{flag}", help=self.help())
        else:
            typ = _scalar(tp)
            info = typer.Option(self.flag, help=self.help())
        if default is None and not (required and not optional):
            typ = typ | None
        return inspect.Parameter(
            self.name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[typ, info],
            default=inspect.Parameter.empty if required else default,
        )

    def value(self, given: Any) -> Any:
        """What the command line gave, as the body's value; None when not given."""
        if given is None or (self.kind != "scalar" and not given):
            return None
        if self.kind == "dict":
            pairs = {}
            for item in given:
                key, sep, value = item.partition("=")
                if not sep or not key or not value:
                    raise CliError(f"{self.flag} {item!r}: expected {self.metavar}")
                pairs[key] = value
            return pairs
        if isinstance(given, bool) and given == self.field.default:
            return None  # a flag left as the model's default: the controller's to fill in
        return list(given) if self.kind == "list" else given


def options(model: type[BaseModel], renames: Mapping[str, Rename]) -> list[FieldOption]:
    unknown = set(renames) - set(model.model_fields)
    if unknown:
        raise TypeError(f"renames of fields {model.__name__} does not have: {sorted(unknown)}")
    out = []
    for n, f in model.model_fields.items():
        tp, _ = _unwrap(f.annotation)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and n not in renames:
            # a nested model: one option per field of it, named after both
            for sub, sf in tp.model_fields.items():
                out.append(FieldOption(f"{n}_{sub}", sf, Rename(), (n, sub)))
        else:
            out.append(FieldOption(n, f, renames.get(n, Rename()), (n,)))
    return out


def command(
    model: type[BaseModel],
    run: Callable[..., None],
    renames: Mapping[str, Rename] = {},
) -> Callable[..., None]:
    """A command taking ``model``'s fields (as above) and ``run``'s own parameters
    but its first, ``body``: what the user gave, by field name, ready to send."""
    fields = options(model, renames)
    own = list(inspect.signature(run, eval_str=True).parameters.values())[1:]
    clash = {f.name for f in fields} & {p.name for p in own}
    if clash:
        raise TypeError(f"{model.__name__} fields clash with {run.__name__}'s: {sorted(clash)}")

    def invoke(**given: Any) -> None:
        body: dict[str, Any] = {}
        for f in fields:
            value = f.value(given.pop(f.name))
            if value is not None:
                where = body
                for key in f.path[:-1]:
                    where = where.setdefault(key, {})
                where[f.path[-1]] = value
        run(body, **given)

    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
    # positional arguments first, in the model's order; then the options
    params = [f.parameter() for f in sorted(fields, key=lambda f: not f.rename.argument)]
    invoke.__signature__ = inspect.Signature([*params, *own])  # type: ignore[attr-defined]
    invoke.__name__ = run.__name__
    invoke.__doc__ = run.__doc__
    return invoke
