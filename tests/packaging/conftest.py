"""Fixtures of the packaging tests. The process and wait helpers are the compatibility suite's
(tests/compat/support.py); every process a test starts goes through `start_process`, which
stops it at teardown (SIGTERM, then SIGKILL if it does not exit in time)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "compat"))

from support import ChildProcess  # noqa: E402


@pytest.fixture
def start_process(tmp_path: Path) -> Iterator[Callable[..., ChildProcess]]:
    """`start_process(name, argv, env=None)` starts a process that is stopped at teardown
    (`env`: its whole environment; None inherits the test's)."""
    started: list[ChildProcess] = []

    def start(name: str, argv: list[str], env: dict[str, str] | None = None) -> ChildProcess:
        child = ChildProcess(name, argv, tmp_path / f"{name}-{len(started)}.log", env)
        started.append(child)
        return child

    yield start
    for child in reversed(started):
        child.stop()
