"""Registrars of the commands that live in their own modules; each adds its subparser."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

REGISTRARS: list[Callable[[Any], None]] = []
