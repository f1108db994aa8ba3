"""Type and range checks of params values, with errors naming the dotted parameter.

A bad value must stop a stage before it does expensive work: in a DFT worker, say, it would be
recorded as a failure of every material (persistently, in the cache) while the stage exits 0.
Every error is a :class:`~esrepro.errors.ConfigError` (a ValueError) whose message starts with
the parameter's name, e.g. ``params.yaml dft.settings.ecut_ev: expected a number, got 'abc'``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from esrepro.errors import ConfigError


def expect_mapping(value: Any, label: str, *, allow_none: bool = False) -> dict[str, Any] | None:
    """A mapping with string keys, as a dict (None passes only with `allow_none`)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{label}: expected a mapping, got {value!r}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{label}: keys must be strings, got {bad!r}")
    return dict(value)


def expect_bool(value: Any, label: str) -> bool:
    """A real boolean: YAML `true`/`false`. Strings such as "no" are truthy, so they are refused."""
    if not isinstance(value, bool):
        raise ConfigError(f"{label}: expected true or false, got {value!r}")
    return value


def expect_str(value: Any, label: str) -> str:
    """A non-empty string (YAML `null` would otherwise become the string "None")."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{label}: expected a non-empty string, got {value!r}")
    return value


def expect_choice(value: Any, label: str, choices: tuple[str, ...]) -> str:
    """One of `choices`, spelled exactly (GPAW's names are case-sensitive)."""
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{label}: expected one of {list(choices)}, got {value!r}")
    return value


def _check_bound(
    number: float, label: str, value: Any, minimum: float | None, inclusive: bool
) -> None:
    """Raise unless `number` (parsed from `value`) is above `minimum` (or at it, `inclusive`)."""
    if minimum is None:
        return
    if number < minimum or (not inclusive and number == minimum):
        relation = ">=" if inclusive else ">"
        raise ConfigError(f"{label}: must be {relation} {minimum:g}, got {value!r}")


def expect_number(
    value: Any, label: str, *, minimum: float | None = None, inclusive: bool = False
) -> float:
    """A finite real number as float, above `minimum` (or equal to it when `inclusive`).

    Numeric strings are accepted because PyYAML reads exponent forms without a dot (`1e-4`) as
    strings; the previous coercion (float(value)) accepted them too, so keys do not change.
    Booleans are refused although Python counts them as numbers.
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise ConfigError(f"{label}: expected a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{label}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{label}: expected a finite number, got {value!r}")
    _check_bound(number, label, value, minimum, inclusive)
    return number


def expect_int(value: Any, label: str, *, minimum: int | None = None) -> int:
    """An integer (an integral float or numeric string passes too), at least `minimum`.

    A fractional value is an error rather than truncated: `workers: 2.5` is a typo, not 2.
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise ConfigError(f"{label}: expected an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        integer = int(value)  # exact, however large (a float round trip is not)
    else:
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{label}: expected an integer, got {value!r}") from None
        if not math.isfinite(number) or not number.is_integer():
            raise ConfigError(f"{label}: expected an integer, got {value!r}")
        integer = int(number)
    _check_bound(integer, label, value, minimum, inclusive=True)
    return integer


def expect_devices(value: Any, label: str) -> int | str:
    """Lightning's ``devices``: a count >= 1, or a string such as ``"auto"``."""
    return (
        expect_str(value, label) if isinstance(value, str) else expect_int(value, label, minimum=1)
    )
