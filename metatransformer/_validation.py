"""Type checks of config values against annotations, before anything is allocated from them.

Configs are data (JSON): a value must already have the annotated type. ``"false"`` is not a bool,
``64.0`` is not an int, ``2.5`` is not a depth; ints are accepted where floats are expected.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from typing import Any, Literal, Mapping, Union

_MISSING = inspect.Parameter.empty


class ConfigError(ValueError, TypeError):
    """A config value of the wrong type or out of range, an unknown or a missing field; the message
    names the field. Both a ValueError and a TypeError, so either ``except`` catches it."""


def check_value(value: Any, annotation: Any, where: str) -> Any:
    """``value`` if it has the type ``annotation`` describes (lists become tuples where tuples are
    expected, ints become floats where floats are), else a TypeError naming ``where``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is inspect.Parameter.empty:
        return value
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise ConfigError(f"{where}: must be one of {list(args)}, got {value!r}")
    if origin in (Union, types.UnionType):
        for option in args:
            try:
                return check_value(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} matches none of {_describe(annotation)}")
    if annotation is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected None, got {value!r}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r} ({type(value).__name__})")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r} ({type(value).__name__})")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where}: must be finite, got {value!r}")
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r} ({type(value).__name__})")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r} ({type(value).__name__})")
    if origin in (tuple, list) or annotation in (tuple, list):
        if not isinstance(value, (tuple, list)):
            raise ConfigError(f"{where}: expected a list, got {value!r} ({type(value).__name__})")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            items = [check_value(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            item_type = args[0] if args else Any
            items = [check_value(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin or annotation) is tuple else items
    if origin is dict or annotation is dict or origin is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r} ({type(value).__name__})")
        key_type, value_type = args if args else (Any, Any)
        return {check_value(k, key_type, f"{where} key"): check_value(v, value_type, f"{where}[{k!r}]")
                for k, v in value.items()}
    if dataclasses.is_dataclass(annotation) and isinstance(value, Mapping):
        return dataclass_from_dict(annotation, value, where=where)
    if isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r} ({type(value).__name__})")
    return value


def _describe(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def constructor_options(cls: type) -> dict[str, inspect.Parameter]:
    """Keyword options of ``cls(...)`` with resolved annotations, ``dim`` excluded (the model supplies it).

    A constructor with ``**kwargs`` forwards them to its parent, so the parent's options are added,
    except those the class fixes itself (listed in its ``fixed_options`` attribute).
    """
    options: dict[str, inspect.Parameter] = {}
    fixed: set[str] = set(getattr(cls, "fixed_options", ()))
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        hints = typing.get_type_hints(init)
        forwards = False
        for name, param in inspect.signature(init).parameters.items():
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                forwards = True
            elif name not in ("self", "dim") and name not in options and name not in fixed \
                    and param.kind is not inspect.Parameter.VAR_POSITIONAL:
                options[name] = param.replace(annotation=hints.get(name, param.annotation))
        if not forwards:
            break
    return options


def resolve_options(cls: type, options: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """Check ``options`` against ``cls``'s constructor and fill in its defaults.

    Returns:
        every option of the constructor with its value (given or default): the resolved config.

    Raises:
        TypeError: an unknown option (the known ones are listed), a missing required one, or a value
            of the wrong type.
    """
    known = constructor_options(cls)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {unknown}; known options: {sorted(known)}")
    resolved = {}
    for name, param in known.items():
        if name in options:
            resolved[name] = check_value(options[name], param.annotation, f"{where}.{name}")
        elif param.default is _MISSING:
            raise ConfigError(f"{where}: missing required option {name!r}")
        else:
            resolved[name] = param.default
    return resolved


def dataclass_from_dict(cls: type, data: Any, *, where: str) -> Any:
    """Build a dataclass from a JSON-style dict: unknown and missing fields named, each value type-checked."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known fields are {sorted(fields)}")
    missing = sorted(name for name, f in fields.items() if name not in data
                     and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    if missing:
        raise ConfigError(f"{where}: missing required field(s) {missing}")
    hints = typing.get_type_hints(cls)
    return cls(**{name: check_value(value, hints[name], f"{where}.{name}") for name, value in data.items()})


def check_range(where: str, value: float, *, low: float | None = None, high: float | None = None,
                low_inclusive: bool = True) -> None:
    """ValueError naming ``where`` unless ``low <= value <= high`` (``low < value`` if not inclusive)."""
    below = low is not None and (value < low if low_inclusive else value <= low)
    if below or (high is not None and value > high):
        lo = "" if low is None else f"{'>=' if low_inclusive else '>'} {low}"
        hi = "" if high is None else f"<= {high}"
        raise ConfigError(f"{where}: must be {' and '.join(p for p in (lo, hi) if p)}, got {value!r}")
