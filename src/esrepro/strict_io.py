"""Strict readers of YAML and JSON inputs: a malformed file is one error naming it.

A truncated, merge-conflicted or binary file must say which file it is and where it breaks,
not raise a bare parser exception; a duplicated YAML key must not silently replace the first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


class InputError(ValueError):
    """An input file is unreadable or malformed; the message names the file."""


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last one).

    A second ``bar:`` in a target would otherwise replace the first without a word.
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                # Keys merged in with "<<" may legitimately be overridden: only the mapping's
                # own keys must be unique.
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # unhashable key: the base class reports it
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} (first at line {first.start_mark.line + 1})",
                        key_node.start_mark,
                    )
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def read_text(path: Path, error: type[InputError] = InputError) -> str:
    """``path`` as UTF-8 text; ``error`` naming the file when it is unreadable or binary."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except OSError as err:
        raise error(f"{path}: cannot read it ({err.strerror or err})") from err


def read_yaml(
    path: str | Path,
    *,
    error: type[InputError] = InputError,
    loader: type[yaml.SafeLoader] = yaml.SafeLoader,
) -> Any:
    """``path`` parsed as YAML; ``error`` naming the file and line when it is not valid YAML."""
    path = Path(path)
    text = read_text(path, error)
    try:
        return yaml.load(text, Loader=loader)  # a SafeLoader (sub)class: no arbitrary objects
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None)
        if isinstance(err, yaml.reader.ReaderError):  # e.g. a NUL byte: only a char offset
            where = f"line {text.count(chr(10), 0, err.position) + 1}"
            problem = f"unacceptable character #x{err.character:04x}: {err.reason}"
        elif mark is not None and problem:
            where = f"line {mark.line + 1}, column {mark.column + 1}"
            context = getattr(err, "context", None)
            problem = f"{problem} ({context})" if context else problem
        else:
            where, problem = "", " ".join(str(err).split())
        raise error(f"{path}{', ' + where if where else ''}: invalid YAML: {problem}") from err


def read_json(path: str | Path, error: type[InputError] = InputError) -> dict[str, Any]:
    """``path`` parsed as a JSON object, else ``error`` naming the file (and line)."""
    path = Path(path)
    text = read_text(path, error)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise error(
            f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from err
    if not isinstance(doc, dict):
        raise error(f"{path}: expected a JSON object, found {type(doc).__name__}")
    return doc
