"""Fewer malloc arenas: the memory a catch-up leaves behind, roughly halved.

Theory of operation
-------------------
glibc's allocator gives each thread that contends for the heap an arena of
its own, up to eight per core.  trio-dls's Duo calls run in worker threads
(``dls_settings.api.max_calls_in_flight``), where duo_client reads responses
and the records of a page are decoded: what Python allocates there above its
own small-object allocator (page buffers, large strings and tables) lands in
those threads' arenas, which fragment and are seldom returned to the system.
Measured with ``benchmarks/bench_msp_scale.py`` (1,000 MSP children): two
arenas instead of the default take the peak from about 90 to 70 MiB and the
idle memory a first catch-up leaves per child from 35 to 17 KiB, at no cost
in speed (the threads spend their time waiting for Duo, not in malloc).

So ``limit_malloc_arenas`` asks glibc, through ``mallopt(M_ARENA_MAX)``, for
two arenas, before any worker thread exists.  It is chosen by capability:
on a C library without ``mallopt`` (musl, macOS, Windows) it does nothing,
and an operator's own ``MALLOC_ARENA_MAX`` is left to rule.
"""

from __future__ import annotations

import ctypes
import os
from typing import Final

__all__ = ["ARENAS", "limit_malloc_arenas"]

ARENAS: Final = 2
_M_ARENA_MAX: Final = -8  # glibc's malloc.h


def limit_malloc_arenas(
    environ: dict[str, str] | os._Environ[str] = os.environ,
) -> bool:
    """Ask the C library for at most ``ARENAS`` arenas; whether it took it."""
    if "MALLOC_ARENA_MAX" in environ:
        return False  # the operator's choice, which glibc read at start
    try:
        # The running process's own symbols, the C library's among them: no
        # search for the library (find_library runs ldconfig) at start-up.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, TypeError, AttributeError):  # no such library, or no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, ARENAS))
