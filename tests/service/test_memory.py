"""The malloc arena limit: taken on glibc, left alone when the operator set one."""

from __future__ import annotations

import ctypes
import gc
from typing import TYPE_CHECKING

from trio_dls.service import memory

if TYPE_CHECKING:
    import pytest


def test_glibc_takes_the_limit() -> None:
    """On this machine's C library (glibc), mallopt accepts M_ARENA_MAX."""
    assert memory.limit_malloc_arenas({}) is True


def test_an_operators_own_setting_wins() -> None:
    """MALLOC_ARENA_MAX in the environment: glibc read it; nothing is changed."""
    assert memory.limit_malloc_arenas({"MALLOC_ARENA_MAX": "4"}) is False


def test_a_c_library_without_mallopt_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """musl, macOS, Windows: no mallopt (or no C library found), no error."""

    class WithoutMallopt:
        def __init__(self, _name: object) -> None:
            pass

    monkeypatch.setattr(ctypes, "CDLL", WithoutMallopt)
    assert memory.limit_malloc_arenas({}) is False


def test_the_startup_heap_is_frozen() -> None:
    """What is alive is moved out of the collector's walks, garbage first freed."""
    try:
        frozen = memory.freeze_startup_heap()
        assert frozen == gc.get_freeze_count()
        assert frozen > 0
    finally:
        gc.unfreeze()
