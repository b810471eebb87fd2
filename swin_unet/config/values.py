"""Config values: the one look-up for choices, and YAML values checked against annotations."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Optional, Sequence, Union

from ..errors import InputError

__all__ = ["choices", "look_up_option", "fill_dataclass", "unknown_key", "dotted_keys",
           "comma_names", "comma_indices"]


def choices(literal: Any) -> tuple:
    """The options of a ``Literal`` type, e.g. ``choices(MetricMode) == ("mm", "paper")``."""
    return typing.get_args(literal)


def comma_names(text: str) -> list[str]:
    """A command line's ``A,B`` list: its non-empty names, stripped."""
    return [name.strip() for name in text.split(",") if name.strip()]


def comma_indices(text: str) -> list[int]:
    """A command line's ``40,55`` list of integers (an argparse ``type``)."""
    import argparse

    try:
        return [int(z) for z in comma_names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected slice numbers like 40,55, got {text!r}")


def look_up_option(value: Any, options: Sequence, key: str,
                   what: Optional[str] = None) -> Any:
    """``value`` if it is one of ``options``; the one check every choice goes through.

    Parameters
    ----------
    value : object
        The value given.
    options : sequence
        The accepted values (``choices(SomeLiteral)``).
    key : str
        What the value is: a dotted config key ("train.optimizer") or a name ("metric mode");
        the error's ``key``.
    what : str, optional
        How the message names it (default ``key``), e.g. "config key 'train.optimizer'".

    Raises
    ------
    InputError
        ``value`` is not one of ``options``; the message names ``key`` and the options.
    """
    if value in options:
        return value
    raise InputError(f"{what or key} must be one of {', '.join(map(str, options))}, got "
                     f"{value!r}", key=key)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " or ".join("null" if t is type(None) else _type_name(t)
                           for t in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it converted (int -> float)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return look_up_option(value, choices(tp), key, f"config key '{key}'")
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except InputError as exc:
                errors.append(exc)
        raise InputError(f"config key '{key}': {value!r} is not a {_type_name(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise InputError(f"config key '{key}': {value!r} is not null")
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise InputError(f"config key '{key}': expected a list, got {value!r}")
        return [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise InputError(f"config key '{key}': expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise InputError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise InputError(f"config key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # a case id such as 0001 read by YAML as a number
        raise InputError(f"config key '{key}': expected a string, got {value!r}")
    raise TypeError(f"unsupported config annotation {tp!r} for '{key}'")


def fill_dataclass(cls: type, values: dict, prefix: str) -> Any:
    """Build dataclass ``cls`` from ``values``, rejecting unknown keys."""
    if not isinstance(values, dict):
        raise InputError(f"config key '{prefix.rstrip('.') or '<root>'}': expected a mapping, "
                         f"got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names, key=str)  # YAML keys may be numbers too
    if unknown:
        raise unknown_key(f"{prefix}{unknown[0]}", [f"{prefix}{n}" for n in names])
    kwargs = {}
    for name, value in values.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = fill_dataclass(tp, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, tp, f"{prefix}{name}")
    return cls(**kwargs)


def dotted_keys(values: dict, prefix: str = "") -> list[str]:
    """Every section and key of a nested dict as a dotted path."""
    keys = []
    for name, value in values.items():
        keys.append(f"{prefix}{name}")
        if isinstance(value, dict):
            keys.extend(dotted_keys(value, f"{prefix}{name}."))
    return keys


def unknown_key(key: str, known: Sequence[str]) -> InputError:
    """The error for an unknown config ``key``, suggesting the nearest of ``known`` (dotted).

    The key's last part is compared with the names in its section (``train.epoch`` ->
    ``train.epochs``); in a section that does not exist, with every key's last part
    (``epochs`` -> ``train.epochs``). Without a close match the section's keys are listed.
    """
    section, _, name = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in sorted(known) if k.rpartition(".")[0] == section}
    in_section = bool(siblings) or any(k == section for k in known)
    pool = siblings if in_section else {k.rpartition(".")[2]: k for k in sorted(known)}
    near = difflib.get_close_matches(name, list(pool), n=1, cutoff=0.6 if in_section else 0.8)
    if not near and not section:  # a top-level name: perhaps a key with its section left out
        pool = {k.rpartition(".")[2]: k for k in sorted(known)}
        near = difflib.get_close_matches(name, list(pool), n=1, cutoff=0.8)
    if near:
        return InputError(f"unknown config key '{key}' (did you mean '{pool[near[0]]}'?)",
                          key=key)
    if not in_section:
        section = ""
        siblings = {k: k for k in sorted(known) if "." not in k}
    return InputError(f"unknown config key '{key}' (known keys under "
                      f"'{section or 'the top level'}': {', '.join(siblings.values())})", key=key)
