"""The error of a user's mistake (a missing or foreign file, a bad setting):
its message names the file or the setting, and the command line prints it as
one line, without a traceback. Also the bounds of the numbers a user gives,
shared by the command line's arguments and the configuration's settings."""
from __future__ import annotations

import argparse
import math
import re
from typing import Callable, Optional, Tuple, Union

# torch's and the extension's integers are 64-bit: a larger one would fail deep in a kernel call
# ("Expected a value of type 'int' ... found type 'int'"), so it is refused where it is given.
INT64_MAX = 2 ** 63 - 1
Number = Union[int, float]


class UserError(ValueError):
    """A file or setting the user gave is missing, unreadable or wrong; the message names it."""


class Bounds:
    """The numbers a setting or an argument may take: integers (or finite floats)
    from `lo` to `hi` (at most INT64_MAX for integers), either end open for floats."""

    def __init__(self, lo: Number, hi: Optional[Number] = None, *, integer: bool = True, open_lo: bool = False,
                 open_hi: bool = False, why: str = ""):
        self.lo, self.hi, self.integer, self.open_lo, self.open_hi, self.why = lo, hi, integer, open_lo, open_hi, why

    def __contains__(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
            return False
        if self.integer:
            return self.lo <= value <= (INT64_MAX if self.hi is None else self.hi)
        try:
            value = float(value)
        except OverflowError:  # an integer beyond any float
            return False
        above = value > self.lo if self.open_lo else value >= self.lo
        below = self.hi is None or (value < self.hi if self.open_hi else value <= self.hi)
        return math.isfinite(value) and above and below

    def describe(self) -> str:
        """'a positive integer', 'an integer from 1 to 4', 'a finite number > 0', 'a number in [0, 1)'."""
        if self.integer:
            if self.hi is not None:
                return f"an integer from {self.lo} to {self.hi}"
            return {0: "a non-negative integer", 1: "a positive integer"}.get(self.lo, f"an integer >= {self.lo}")
        if self.hi is None:
            return f"a finite number {'>' if self.open_lo else '>='} {self.lo:g}"
        return f"a number in {'(' if self.open_lo else '['}{self.lo:g}, {self.hi:g}{')' if self.open_hi else ']'}"

    def refusal(self, got) -> str:
        """'expected <what is allowed>, got <value>', naming the 64-bit limit where an integer passed it."""
        value = self.parse(got) if isinstance(got, str) else got
        huge = self.integer and self.hi is None and isinstance(value, int) and not isinstance(value, bool) \
            and abs(value) > INT64_MAX
        limit = f" that fits in 64 bits (at most {INT64_MAX})" if huge else ""
        return f"expected {self.describe()}{limit}{self.why}, got {shown(got)}"

    def parse(self, text: str) -> Optional[Number]:
        """`text` as a number of this kind, or None when it is none."""
        return _integer(text) if self.integer else _float(text)


WORKERS = Bounds(1, 1024)  # processes: more is a typo, and a process pool may fork them all at once


def shown(value, limit: int = 60) -> str:
    """repr(value), cut short: a message stays one readable line whatever was passed."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def parse_hxw(text: str) -> Tuple[int, int]:
    """An ``HxW`` size (``96x320``, either case of x) as ``(H, W)``; ValueError when it is
    not one. The caller bounds the sides and words the refusal for its own argument."""
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def _integer(text: str) -> Optional[int]:
    match = re.fullmatch(r"\s*([+-]?)0*([0-9]+)\s*", text)
    if match is None:
        return None
    sign, digits = match.groups()
    # int() refuses thousands of digits; anything this long is out of range anyway
    value = int(digits) if len(digits) <= 40 else 10 ** 40
    return -value if sign == "-" else value


def _float(text: str) -> Optional[float]:
    try:
        return float(text)
    except ValueError:
        return None


def argument(bounds: Bounds) -> Callable[[str], Number]:
    """An argparse type: the text as a number within `bounds`, else an ArgumentTypeError
    saying what is allowed and what was given (argparse prefixes the argument's name)."""

    def parse(text: str) -> Number:
        value = bounds.parse(text)
        if value is None or value not in bounds:
            raise argparse.ArgumentTypeError(bounds.refusal(text))
        return value

    return parse
