"""The Python API's one input check: every public function's arguments are checked against its annotations
before any work, and a wrong one is a UsageError (exit 2) naming the parameter, never a TypeError.

The rules, one per annotation (the CLI passes the same values and never meets them):

- a ``str`` where a sequence of strings is expected (``include="*.json"``) is ONE item, as huggingface_hub's
  ``allow_patterns`` takes it; ``bytes`` and items that are not ``str`` are refused;
- a path is a ``str`` or an ``os.PathLike`` giving one, never empty, never with a NUL character;
- a ``bool`` is ``True`` or ``False`` (not ``0``/``1``), and a number is never a ``bool``;
- text never holds a NUL character (no file name, URL or header can).

A parameter whose annotation has no rule fails the first call (tests/test_api_inputs.py calls them all).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import ParamSpec, TypeVar

from mdl.errors import MdlError, UsageError

P = ParamSpec("P")
R = TypeVar("R")


def _kind(value: object) -> str:
    return "None" if value is None else type(value).__name__


def _refuse(param: str, expected: str, value: object) -> UsageError:
    shown = repr(value) if isinstance(value, str | bytes | int | float) else _kind(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return UsageError(f"{param}: expected {expected}, got {shown}")


def as_text(value: object, *, param: str) -> str:
    """A ``str`` without NUL characters."""
    if not isinstance(value, str):
        raise _refuse(param, "a string", value)
    if "\x00" in value:
        raise UsageError(f"{param}: a NUL character is not allowed in {value[:60]!r}")
    return value


def as_strings(value: object, *, param: str) -> tuple[str, ...]:
    """A sequence of strings as a tuple; one ``str`` is one item (``include="*.json"`` is ``["*.json"]``)."""
    if isinstance(value, str):
        return (as_text(value, param=param),)
    if isinstance(value, bytes | bytearray | memoryview | Mapping) or not isinstance(value, Iterable):
        raise _refuse(param, "a string or a list of strings", value)
    return tuple(as_text(item, param=f"{param}[{i}]") for i, item in enumerate(value))


def as_path(value: object, *, param: str) -> Path:
    """A ``str`` or ``os.PathLike[str]``, not empty, without NUL characters."""
    if isinstance(value, os.PathLike):
        try:
            value = os.fspath(value)
        except TypeError:  # __fspath__ gave something other than str or bytes
            raise _refuse(param, "a path (str or os.PathLike)", value) from None
    if not isinstance(value, str):
        raise _refuse(param, "a path (str or os.PathLike)", value)
    if not value:
        raise UsageError(f"{param}: expected a path, got ''")
    return Path(as_text(value, param=param))


def as_bool(value: object, *, param: str) -> bool:
    """``True`` or ``False``: ``1``, ``"yes"`` or ``None`` are refused rather than guessed."""
    if not isinstance(value, bool):
        raise _refuse(param, "True or False", value)
    return value


def as_int(value: object, *, param: str) -> int:
    """A whole number (a ``bool`` is not one)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _refuse(param, "a whole number", value)
    return value


def as_number(value: object, *, param: str) -> float:
    """A number (``int`` or ``float``, not a ``bool``); its range (NaN, infinity) is the parameter's own check,
    which names the flag too."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _refuse(param, "a number", value)
    return float(value)


def as_environ(value: object, *, param: str) -> Mapping[str, str]:
    """A mapping of strings to strings (``os.environ`` or a dict)."""
    if not isinstance(value, Mapping):
        raise _refuse(param, "a mapping of strings to strings", value)
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise UsageError(f"{param}: expected strings, got {_kind(key)} {key!r}: {_kind(item)}")
    return value


def _has(*methods: str) -> Callable[[object], bool]:
    return lambda value: all(callable(getattr(value, m, None)) for m in methods)


_PROGRESS = _has("begin", "start", "waiting", "advance", "finish", "note")
_READABLE = _has("read")
_WRITABLE = _has("write")


def _binary(test: Callable[[object], bool]) -> Callable[[object], bool]:
    """``test``, and not a text stream (io.StringIO, open(..., "r"), sys.stdout): archives are bytes."""
    return lambda value: test(value) and not isinstance(value, io.TextIOBase)


def _catalog(value: object, *, param: str) -> object:
    from mdl.catalog import Catalog

    return value if isinstance(value, Catalog) else as_path(value, param=param)


def _archive(value: object, *, param: str) -> object:
    if isinstance(value, str | os.PathLike):
        return as_path(value, param=param)
    if not _binary(_READABLE)(value):
        raise _refuse(param, "a path or a binary stream", value)
    return value


def _duck(test: Callable[[object], bool], expected: str) -> Callable[..., object]:
    def check(value: object, *, param: str) -> object:
        if not test(value):
            raise _refuse(param, expected, value)
        return value

    return check


def _rate(value: object, *, param: str) -> str:
    return str(as_int(value, param=param)) if isinstance(value, int) else as_text(value, param=param)


_Rule = Callable[..., object]
# Each annotation the public API uses (as written: the modules use ``from __future__ import annotations``).
_RULES: dict[str, _Rule] = {
    "str": as_text,
    "bool": as_bool,
    "int": as_int,
    "float": as_number,
    "StrPath": as_path,
    "Sequence[str]": as_strings,
    "Catalog | StrPath": _catalog,
    "Mapping[str, str]": as_environ,
    "Progress": _duck(_PROGRESS, "a Progress (begin, start, waiting, advance, finish, note)"),
    "BinaryIO": _duck(_binary(_WRITABLE), "a binary stream to write to"),
    "StrPath | BinaryIO": _archive,
    "Callable[[str], str]": _duck(callable, "a function"),
    "Callable[[FileOutcome], None]": _duck(callable, "a function"),
    "str | int": _rate,
}


def _rule(annotation: object, *, where: str) -> tuple[_Rule, bool]:
    """The rule for an annotation, and whether ``None`` is accepted."""
    text = str(annotation)
    optional = text.endswith(" | None")
    base = text.removesuffix(" | None")
    if base not in _RULES:
        raise MdlError(f"internal: {where} has an annotation no input rule knows: {text}")
    return _RULES[base], optional


@functools.cache
def _rules(func: Callable[..., object]) -> tuple[inspect.Signature, dict[str, tuple[_Rule, bool]]]:
    signature = inspect.signature(func)
    rules = {name: _rule(p.annotation, where=f"{func.__name__}({name})") for name, p in signature.parameters.items()}
    return signature, rules


def checked(func: Callable[P, R]) -> Callable[P, R]:
    """Check and normalise every argument of a public API function before it runs (the one input layer)."""

    @functools.wraps(func)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        signature, rules = _rules(func)
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:  # a missing argument, or one the function does not take
            raise UsageError(f"{func.__name__}(): {exc}") from None
        for name, value in bound.arguments.items():
            rule, optional = rules[name]
            kind = signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                bound.arguments[name] = tuple(rule(v, param=f"{name}[{i}]") for i, v in enumerate(value))
            elif value is not None or not optional:
                bound.arguments[name] = rule(value, param=name)
        with loggers_kept():
            return func(*bound.args, **bound.kwargs)

    return call


# huggingface_hub puts a stderr handler (and a level) on its logger the first time it is imported, which a call of
# mdl's may be: a library leaves the program's loggers as it found them.
_BORROWED_LOGGERS = ("huggingface_hub",)


@contextlib.contextmanager
def loggers_kept() -> Iterator[None]:
    """Take off again the handlers a call's imports put on :data:`_BORROWED_LOGGERS`, and restore their levels."""
    loggers = [logging.getLogger(name) for name in _BORROWED_LOGGERS]
    before = [(list(logger.handlers), logger.level) for logger in loggers]
    try:
        yield
    finally:
        for logger, (handlers, level) in zip(loggers, before, strict=True):
            for handler in [h for h in logger.handlers if h not in handlers]:
                logger.removeHandler(handler)
            logger.setLevel(level)
