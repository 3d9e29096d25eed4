"""Argument types the command-line tools share (argparse ``type=`` callables)."""
from __future__ import annotations

import argparse
import math


def spacing_mm(text: str) -> float:
    """A pixel spacing: a positive, finite number of mm per pixel (0, inf and nan are no spacing)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"a pixel spacing is a positive number of mm, got {text}")
    return value


def at_least_one(text: str) -> int:
    """A count of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value
