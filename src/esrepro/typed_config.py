"""Typed, frozen stage configs read from params.yaml once, at the stage's boundary.

A stage's config is a frozen dataclass. :func:`parse` builds it from params.yaml, each field
from the key of the same name under the dataclass's group (a nested dataclass is a sub-group),
validated by its annotation with the :mod:`esrepro.checks` helpers: ``int``, ``float``,
``bool``, ``str``, ``Literal[...]`` choices, ``X | None`` (null allowed), ``tuple[X, ...]``
lists and ``Mapping`` (a raw sub-tree, frozen). :func:`param` adds bounds, a key elsewhere
(``at="model.pooling"``) or a custom reader.

Fields have no defaults: params.yaml is the one source of them, and a missing key is an error
naming it. Every key read is recorded in the :class:`ParamsSource`, so that

* a key under a paper's group that none of its stages reads is an error naming it (a typo such
  as ``dosnp.train.lsos``: :func:`unread_keys`), and
* the params each stage declares to DVC can be checked to cover what its config reads
  (:mod:`esrepro.pipeline`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union

from esrepro.checks import (
    expect_bool,
    expect_choice,
    expect_int,
    expect_mapping,
    expect_number,
    expect_str,
)
from esrepro.errors import ConfigError

T = TypeVar("T")

#: A custom reader: ``read(source, path)`` returns the field's value, recording what it reads.
Reader = Callable[["ParamsSource", str], Any]
#: A custom check: ``check(raw value, label)`` returns the field's value.
Check = Callable[[Any, str], Any]


@dataclass
class ParamsSource:
    """The params being read (``data``), named as ``file`` in errors, and every key read so far."""

    data: Mapping[str, Any]
    file: str = "params.yaml"
    reads: set[str] = field(default_factory=set)

    def label(self, path: str) -> str:
        return f"{self.file} {path}"

    def lookup(self, path: str) -> Any:
        """The value at the dotted ``path``, recorded as read; a missing key is an error."""
        node: Any = self.data
        parts = path.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, Mapping):
                where = ".".join(parts[:depth])
                raise ConfigError(f"{self.label(where)}: expected a mapping, got {node!r}")
            if part not in node:
                raise ConfigError(
                    f"{self.label(path)}: missing (params.yaml must hold every key a stage reads)"
                )
            node = node[part]
        self.reads.add(path)
        return node


def param(
    *,
    at: str | None = None,
    minimum: float | None = None,
    above: float | None = None,
    check: Check | None = None,
    read: Reader | None = None,
    inline: bool = False,
) -> Any:
    """A config field: ``minimum`` (inclusive) or ``above`` (exclusive) bound a number,
    ``at`` reads an absolute dotted key instead of ``<group>.<field>``, ``check`` replaces the
    annotation's check, ``read`` the whole lookup; ``inline`` reads a nested dataclass from the
    keys of the enclosing group itself (e.g. ``dosnp.n_materials`` for a ``Selection``)."""
    return field(
        metadata={
            "at": at, "minimum": minimum, "above": above, "check": check, "read": read,
            "inline": inline,
        }
    )


def parse(cls: type[T], source: ParamsSource, group: str) -> T:
    """Build the dataclass ``cls`` from the keys under ``group`` (dotted) of ``source``."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        meta = f.metadata
        path = meta.get("at") or (group if meta.get("inline") else f"{group}.{f.name}")
        if meta.get("read") is not None:
            values[f.name] = meta["read"](source, path)
        elif dataclasses.is_dataclass(hints[f.name]):
            values[f.name] = parse(hints[f.name], source, path)
        elif meta.get("check") is not None:
            values[f.name] = meta["check"](source.lookup(path), source.label(path))
        else:
            values[f.name] = convert(hints[f.name], source.lookup(path), source.label(path), meta)
    return cls(**values)


def convert(hint: Any, raw: Any, label: str, meta: Mapping[str, Any] | None = None) -> Any:
    """``raw`` checked and converted to the annotation ``hint`` (see the module docstring)."""
    meta = meta or {}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1 or len(args) != 2:
            raise TypeError(f"{label}: unsupported annotation {hint!r} (only X | None)")
        return None if raw is None else convert(rest[0], raw, label, meta)
    if origin is Literal:
        return expect_choice(raw, label, tuple(args))
    if origin is tuple:
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"{label}: unsupported annotation {hint!r} (only tuple[X, ...])")
        if not isinstance(raw, list | tuple):
            raise ConfigError(f"{label}: expected a list, got {raw!r}")
        return tuple(convert(args[0], v, f"{label}[{i}]", meta) for i, v in enumerate(raw))
    if hint is bool:
        return expect_bool(raw, label)
    if hint is int:
        return expect_int(raw, label, minimum=meta.get("minimum"))
    if hint is float:
        if meta.get("above") is not None:
            return expect_number(raw, label, minimum=meta["above"])
        return expect_number(raw, label, minimum=meta.get("minimum"), inclusive=True)
    if hint is str:
        return expect_str(raw, label)
    if hint is Any:
        return freeze(raw)
    if origin is not None and issubclass(origin, Mapping) or hint is Mapping:
        return freeze(expect_mapping(raw, label))
    raise TypeError(f"{label}: unsupported annotation {hint!r}")


def freeze(value: Any) -> Any:
    """A read-only copy: mappings become ``MappingProxyType``, lists tuples (recursively)."""
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def covered(path: str, reads: set[str]) -> bool:
    """Whether ``path`` was read, itself or as part of a sub-tree read whole."""
    return path in reads or any(path.startswith(r + ".") for r in reads)


def unread_keys(data: Mapping[str, Any], group: str, reads: set[str]) -> list[str]:
    """Dotted keys under ``group`` of ``data`` that no read covers (unknown keys)."""
    out: list[str] = []

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}.{key}"
            if covered(path, reads):
                continue
            if isinstance(value, Mapping) and any(r.startswith(path + ".") for r in reads):
                walk(value, path)
            else:
                out.append(path)

    node = data.get(group)
    if isinstance(node, Mapping):
        walk(node, group)
    return out
