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

Python's cyclic garbage collector is the other start-up matter.  Every page
makes thousands of containers (a record is a dict of dicts), so collections
run all the time, and each full one walks every object alive: the modules,
classes and config of start-up, about 50,000 objects that live as long as
the process.  ``freeze_startup_heap`` (``gc.freeze``) moves them out of the
collector's view once start-up is done; a page of 1,000 auth records then
costs 11.7 ms instead of 13.7 ms to decode, enrich and write (measured in
one process, collector on, frozen and off: frozen is within 2% of off).
Nothing is lost: frozen objects are still freed by reference counting, only
a cycle among them would outlive its use, and start-up's objects are meant
to last.
"""

from __future__ import annotations

import ctypes
import gc
import os
from typing import Final

__all__ = ["ARENAS", "freeze_startup_heap", "limit_malloc_arenas"]

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


def freeze_startup_heap() -> int:
    """Move every object alive now out of the collector's walks; how many."""
    gc.collect()  # what start-up left as garbage is freed, not frozen
    gc.freeze()
    return gc.get_freeze_count()
