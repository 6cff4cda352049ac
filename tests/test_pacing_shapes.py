"""Catch-up against Duo limits of every plausible shape, under DLS's defaults.

Duo publishes neither its limits nor their shape, so the pacing is held to
the optimum of each of several (issue 12): sliding windows of 10 and 60 s,
short and long; a fixed window; token buckets without and with a burst; and
one limit that every endpoint of the integration shares.  Each case runs the
real tree and fetchers, with DLS's defaults (offset 180 days, poll 120 s),
on trio's virtual clock, against the fake's request handler with that
limiter (``benchmarks/bench_pacing.py`` has the harness and prints the same
cases as a table).  Pages are of 10 records: the pace counts requests, not
records.  The seed moves the run's start within a minute, so a fixed window's
edges fall elsewhere.

The optimum is computed from the limit's parameters (``Faults.least_time``):
the first request at the start, every next one as soon as the limit serves
it, and never faster than four a second (trio-dls's own pace before any 429).

The bounds (``docs/fetching.md``, *Pacing*):

* 200 pages: within 1.15 times the optimum, at most 10% of requests refused.
* 20 pages: the window must first be found, which no client that does not
  know it can do for free.  Doubling the wait from 0.25 s costs one 429 per
  doubling (``log2(W / 0.25 s)``), finding the burst one per halving of it
  (``log2(B)``: a bucket refills while its first burst is measured), plus
  the first refusal of each endpoint and one for the bisection; and the
  first served wait may overshoot the window (by up to the doubling) once.
  So 1.4 times the optimum, and 429s within that exploration plus 10%.
"""

from __future__ import annotations

import math

import pytest

from benchmarks.bench_pacing import Shape, catch_up, limits, start_of
from trio_dls.duo.window import INITIAL_SPACING
from trio_dls.fakeduo import RateShape

LONG, SHORT = 200, 20
SEEDS = (1, 2, 3)
PAGE = 10


def window_of(shape: Shape) -> float:
    """The seconds over which the limit refills its whole allowance."""
    if shape.shape is RateShape.TOKEN_BUCKET:
        return (shape.burst or 1) * 60 / shape.per_minute
    return shape.window


def exploring(shape: Shape) -> int:
    """The 429s finding an unknown window may cost (see the module docstring)."""
    doublings = math.ceil(math.log2(window_of(shape) / INITIAL_SPACING))
    halvings = math.ceil(math.log2(allowance_of(shape)))
    return doublings + halvings + len(shape.endpoints) + 1


def allowance_of(shape: Shape) -> int:
    """The requests the limit serves at once: its burst, or a window's count."""
    if shape.shape is RateShape.TOKEN_BUCKET:
        return shape.burst or 1
    return round(shape.per_minute * shape.window / 60)


def ratio_and_refusals(shape: Shape, seed: int) -> tuple[float, int, int]:
    """(Ratio to the optimum, 429s, requests) of one run; every record once."""
    run = catch_up(shape, seed, PAGE)
    assert run.exact, "a record was lost or sent twice"
    return run.seconds / shape.optimum(start_of(seed)), run.refused, run.requests


def case_id(shape: Shape) -> str:
    """A readable test id."""
    return f"{shape.name}, {shape.pages} pages".replace(" ", "-")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", limits(LONG), ids=case_id)
def test_a_long_backlog_is_caught_up_near_the_optimum(shape: Shape, seed: int) -> None:
    """200 pages: within 1.15x the optimum, at most one request in ten refused."""
    ratio, refused, requests = ratio_and_refusals(shape, seed)
    assert ratio <= 1.15
    assert refused <= 0.10 * requests


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", limits(SHORT), ids=case_id)
def test_a_short_backlog_pays_only_the_exploration(shape: Shape, seed: int) -> None:
    """20 pages: the window is found at a bounded cost in time and in 429s."""
    ratio, refused, requests = ratio_and_refusals(shape, seed)
    assert ratio <= 1.4
    assert refused <= exploring(shape) + 0.10 * requests
