"""Errors that mean "the input is wrong", not "the code is wrong".

A stage that stops on one of these prints one line naming the file or value and exits non-zero
(:func:`esrepro.stage_cli.expected_errors` lists them with the fetch and structure errors); any
other exception is a bug and keeps its traceback. This module imports nothing: every stage's
code imports it, through :mod:`esrepro.checks`.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad or missing input: a file, a value or a source the message names."""


class ConfigError(InputError):
    """A params.yaml value is missing, unknown or out of range; the message starts with its key,
    e.g. ``params.yaml dosnp.train.lr: expected a number, got 'abc'``."""

