"""Recorded vs wanted: which settings of an existing store, split or run differ from a request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def differing_keys(recorded: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """Keys of `wanted` whose recorded value differs (a missing one reads as None), in order."""
    return [key for key in wanted if recorded.get(key) != wanted[key]]


def describe_differences(recorded: Mapping[str, Any], wanted: Mapping[str, Any]) -> str:
    """`key: recorded != requested wanted, …` for every differing key, for error messages."""
    return ", ".join(
        f"{key}: {recorded.get(key)!r} != requested {wanted[key]!r}"
        for key in differing_keys(recorded, wanted)
    )
