"""The Python API's one input check: each argument is checked against its annotation before any
work, and a wrong one is a UsageError (exit 2) naming the parameter. A ``str`` where a sequence of
strings goes is ONE item (as huggingface_hub's ``allow_patterns`` takes it); a ``bool`` is never a
number; text never holds a NUL. An annotation no rule knows fails the first call
(tests/test_api_inputs.py calls them all)."""

from __future__ import annotations

import functools
import inspect
import io
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from mdl.errors import MdlError, UsageError

P = ParamSpec("P")
R = TypeVar("R")
_Rule = Callable[..., object]


def _kind(value: object) -> str:
    return "None" if value is None else type(value).__name__


def _refuse(param: str, expected: str, value: object) -> UsageError:
    shown = repr(value) if isinstance(value, str | bytes | int | float) else _kind(value)
    return UsageError(
        f"{param}: expected {expected}, got {shown[:77] + '...' if len(shown) > 80 else shown}"
    )


def _text(value: object, *, param: str) -> str:
    if not isinstance(value, str):
        raise _refuse(param, "a string", value)
    if "\x00" in value:
        raise UsageError(f"{param}: a NUL character is not allowed in {value[:60]!r}")
    return value


def _many(one: _Rule, kinds: Any, expected: str) -> _Rule:
    """One value (a ``kinds``) is one item, as is a list of them: each checked by ``one``."""

    def check(value: object, *, param: str) -> tuple[object, ...]:
        if isinstance(value, kinds):
            return (one(value, param=param),)
        if isinstance(value, bytes | bytearray | memoryview | Mapping) or not isinstance(
            value, Iterable
        ):
            raise _refuse(param, expected, value)
        return tuple(one(item, param=f"{param}[{i}]") for i, item in enumerate(value))

    return check


def _mirrors(value: object, *, param: str) -> tuple[str | Mapping[str, str], ...]:
    """Mirrors as the catalog's ``mirrors`` takes them: URL templates or ``{ url, endpoint }``
    tables (one alone is one item), tables checked by the catalog's own rules."""
    if isinstance(value, str | Mapping):
        value = (value,)
    if isinstance(value, bytes | bytearray | memoryview) or not isinstance(value, Iterable):
        raise _refuse(param, "a mirror URL template, a { url, endpoint } table, or a list", value)
    entries = tuple(
        _environ(item, param=f"{param}[{i}]")
        if isinstance(item, Mapping)
        else _text(item, param=f"{param}[{i}]")
        for i, item in enumerate(value)
    )
    if not any(isinstance(entry, Mapping) for entry in entries):
        return entries  # (templates: checked with the settings, as --mirror's are)
    from mdl.catalog.load import given_mirrors

    return given_mirrors(entries, where=param)


def _path(value: object, *, param: str) -> Path:
    if isinstance(value, os.PathLike):
        try:
            value = os.fspath(value)
        except TypeError:  # __fspath__ gave something other than str or bytes
            raise _refuse(param, "a path (str or os.PathLike)", value) from None
    if not isinstance(value, str):
        raise _refuse(param, "a path (str or os.PathLike)", value)
    if not value:
        raise UsageError(f"{param}: expected a path, got ''")
    return Path(_text(value, param=param))


def _environ(value: object, *, param: str) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise _refuse(param, "a mapping of strings to strings", value)
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise UsageError(f"{param}: expected strings, got {_kind(key)} {key!r}: {_kind(item)}")
    return value


def _is(
    test: Callable[[object], bool], expected: str, then: Callable[[Any], object] = lambda v: v
) -> _Rule:
    def check(value: object, *, param: str) -> object:
        if not test(value):
            raise _refuse(param, expected, value)
        return then(value)

    return check


def _has(*methods: str, binary: bool = False) -> Callable[[object], bool]:
    """Has ``methods``; ``binary``: and is not a text stream (io.StringIO, sys.stdout), as
    archives are bytes.
    """
    return lambda v: (
        all(callable(getattr(v, m, None)) for m in methods)
        and not (binary and isinstance(v, io.TextIOBase))
    )


def _catalog(value: object, *, param: str) -> object:
    from mdl.catalog.specs import Catalog

    return value if isinstance(value, Catalog) else _path(value, param=param)


def _archive(value: object, *, param: str) -> object:
    if isinstance(value, str | os.PathLike):
        return _path(value, param=param)
    return _is(_has("read", binary=True), "a path or a binary stream")(value, param=param)


_PROGRESS = ("begin", "start", "waiting", "advance", "finish", "note")  # the methods a Progress has
_int = _is(lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number")
# Each annotation the public API uses (as written: the modules use ``from __future__ import
# annotations``).
_RULES: dict[str, _Rule] = {
    "str": _text,
    "bool": _is(lambda v: isinstance(v, bool), "True or False"),
    "int": _int,
    # NaN: own check
    "float": _is(
        lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number", float
    ),
    "StrPath": _path,
    "Sequence[StrPath]": _many(_path, str | os.PathLike, "a path or a list of paths"),
    "Sequence[str]": _many(_text, str, "a string or a list of strings"),
    "Sequence[str | Mapping[str, str]]": _mirrors,
    "Catalog | StrPath": _catalog,
    "Mapping[str, str]": _environ,
    "Progress": _is(_has(*_PROGRESS), f"a Progress ({', '.join(_PROGRESS)})"),
    "Secrets": _is(
        _has("add", "add_url"), "a Secrets (mdl.redact: the run's secrets, hidden from every sink)"
    ),
    "BinaryIO": _is(_has("write", binary=True), "a binary stream to write to"),
    "StrPath | BinaryIO": _archive,
    "Callable[[str], str]": _is(callable, "a function"),
    "Callable[[str], None]": _is(callable, "a function"),
    "Callable[[FileOutcome], None]": _is(callable, "a function"),
    "Callable[[Serving], None]": _is(callable, "a function"),
    "Callable[[ServeReport], None]": _is(callable, "a function"),
    "threading.Event": _is(_has("set", "is_set", "wait"), "a threading.Event"),
    "str | int": lambda v, *, param: (
        str(_int(v, param=param)) if isinstance(v, int) else _text(v, param=param)
    ),
}


@functools.cache
def _rules(func: Callable[..., object]) -> tuple[inspect.Signature, dict[str, tuple[_Rule, bool]]]:
    """The signature, and each parameter's rule with whether it accepts ``None``."""
    signature = inspect.signature(func)
    rules = {}
    for name, parameter in signature.parameters.items():
        text = str(parameter.annotation)
        base = text.removesuffix(" | None")
        if base not in _RULES:
            raise MdlError(
                f"internal: {func.__name__}({name}) has an annotation no input rule knows: {text}"
            )
        rules[name] = (_RULES[base], base != text)
    return signature, rules


def checked(func: Callable[P, R]) -> Callable[P, R]:
    """Check and normalise every argument of a public API function before it runs (the one input
    layer).
    """

    @functools.wraps(func)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        signature, rules = _rules(func)
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:  # a missing argument, or one the function does not take
            raise UsageError(f"{func.__name__}(): {exc}") from None
        for name, value in bound.arguments.items():
            rule, optional = rules[name]
            if signature.parameters[name].kind is inspect.Parameter.VAR_POSITIONAL:
                bound.arguments[name] = tuple(
                    rule(v, param=f"{name}[{i}]") for i, v in enumerate(value)
                )
            elif value is not None or not optional:
                bound.arguments[name] = rule(value, param=name)
        # huggingface_hub puts a stderr handler (and a level) on its logger the first time it is
        # imported, which a call may do: a library leaves the program's loggers as it found them.
        borrowed = logging.getLogger("huggingface_hub")
        handlers, level = list(borrowed.handlers), borrowed.level
        try:
            return func(*bound.args, **bound.kwargs)
        finally:
            for handler in [h for h in borrowed.handlers if h not in handlers]:
                borrowed.removeHandler(handler)
            borrowed.setLevel(level)

    return call
