"""A fake Duo Admin API, for tests and the demo: real HTTPS, real signatures.

duo_client talks to it unmodified. The package is split by what each module
owns:

- ``signing``: Duo's canonical request strings and signature checks (pure);
- ``data``: the generated, seeded records each account holds (pure);
- ``logs``: the five log endpoints' parameters, paging and answers (pure);
- ``faults``: rate limits, 5xx, delays, drops, malformed JSON (pure);
- ``envelope``: Duo's ``stat``/``code``/``message`` envelope (pure);
- ``wire``: the little HTTP/1.1 duo_client needs (pure);
- ``app``: request handling from parsed request to response plan (no I/O);
- ``server``: the trio server, TLS, and a background-thread runner.

Typical use::

    fake = FakeDuo(FakeDuoConfig(dataset=DatasetSpec(seed=7)))
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        admin = duo_client.Admin(**fake.client_kwargs())

or, from synchronous code, ``with serve_in_thread(FakeDuo()) as fake: ...``.
"""

from __future__ import annotations

from trio_dls.fakeduo.app import (
    ACCOUNT_LIST_PATH,
    FakeDuoApp,
    FakeDuoConfig,
    Plan,
    Stats,
)
from trio_dls.fakeduo.data import (
    ChildAccount,
    Dataset,
    DatasetSpec,
    FakeRecord,
    account_id_for,
    make_children,
    record_key,
)
from trio_dls.fakeduo.envelope import DuoError
from trio_dls.fakeduo.faults import DropPoint, Faults, RateScope, RateShape
from trio_dls.fakeduo.logs import PATHS, LogRules, answer_log_query
from trio_dls.fakeduo.server import FakeDuo, serve_in_thread
from trio_dls.fakeduo.signing import Credentials, SignedRequest, sign, verify_request

__all__ = [
    "ACCOUNT_LIST_PATH",
    "PATHS",
    "ChildAccount",
    "Credentials",
    "Dataset",
    "DatasetSpec",
    "DropPoint",
    "DuoError",
    "FakeDuo",
    "FakeDuoApp",
    "FakeDuoConfig",
    "FakeRecord",
    "Faults",
    "LogRules",
    "Plan",
    "RateScope",
    "RateShape",
    "SignedRequest",
    "Stats",
    "account_id_for",
    "answer_log_query",
    "make_children",
    "record_key",
    "serve_in_thread",
    "sign",
    "verify_request",
]
