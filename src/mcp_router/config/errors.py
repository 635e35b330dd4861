"""The error raised for any invalid configuration (file, environment or command line)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["ConfigError", "format_key_path"]


def format_key_path(loc: Iterable[Any]) -> str:
    """Render a location tuple as a key path: ``("backends", 1, "url")`` -> ``backends[1].url``."""
    path = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            path += f"[{part}]"
        else:
            text = str(part)
            path = f"{path}.{text}" if path else text
    return path


class ConfigError(Exception):
    """Invalid configuration: names where it came from and every problem found.

    ``source`` is the file path (or ``"environment"`` / ``"command line"``); ``problems`` is a
    list of ``(key_path, message)`` pairs, for example
    ``("backends[1].priority", "Input should be a valid integer")``. The key path may be empty
    when the problem concerns the source as a whole (``"file not found"``).

    ``str(error)`` gives one line per problem::

        config/backends.yaml: backends[1].priority: Input should be a valid integer
    """

    source: str
    problems: list[tuple[str, str]]

    def __init__(self, source: str, problems: Sequence[tuple[str, str]] | str) -> None:
        self.source = str(source)
        if isinstance(problems, str):
            self.problems = [("", problems)]
        else:
            self.problems = [(str(key), str(message)) for key, message in problems]
        if not self.problems:
            self.problems = [("", "invalid configuration")]
        super().__init__(self._render())

    def _render(self) -> str:
        lines = []
        for key, message in self.problems:
            lines.append(f"{self.source}: {key}: {message}" if key else f"{self.source}: {message}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self._render()

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.source, list(self.problems)))
