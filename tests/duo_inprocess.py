"""A ``DuoApi`` that talks to the fake Duo API's request handler in-process.

The fake's HTTP server and duo_client's threads run on the real clock; the
fetcher tests that measure pacing or simulate hours of catching up need trio's
virtual clock instead.  This adapter signs each request as duo_client does,
hands it to ``FakeDuoApp.handle`` (the same code the fake's server runs), waits
the fake's delay on trio's clock, and turns the answer into what duo_client
would have raised, through the production ``trio_dls.duo.client.classify``.  Only the
socket and the thread are left out.
"""

from __future__ import annotations

import email.utils
import json
import urllib.parse
from typing import TYPE_CHECKING, Any

import trio

from trio_dls.duo.client import CALL_TIMEOUT, DuoAnswer, TransientApiError, classify
from trio_dls.duo.clock import parse_http_date
from trio_dls.fakeduo.signing import Credentials, SignedRequest, sign
from trio_dls.fakeduo.wire import Request

if TYPE_CHECKING:
    from trio_dls.fakeduo import FakeDuoApp

HOST = "localhost"


def duo_client_error(status: int, reason: str, body: bytes) -> RuntimeError:
    """Build the RuntimeError duo_client raises for a non-200 answer."""
    error = RuntimeError(f"Received {status} {reason}")
    error.status = status  # type: ignore[attr-defined]
    error.reason = reason  # type: ignore[attr-defined]
    try:
        error.data = json.loads(body)  # type: ignore[attr-defined]
    except ValueError:
        error.data = body.decode("utf-8", "replace")  # type: ignore[attr-defined]
    return error


class InProcessDuo:
    """``DuoApi`` over a ``FakeDuoApp``, for one account (or MSP child)."""

    def __init__(
        self,
        app: FakeDuoApp,
        child_account_id: str | None = None,
        *,
        skey: str | None = None,
        outcomes: list[tuple[float, int]] | None = None,
    ) -> None:
        """Call *app* for *child_account_id*, with its credentials or *skey*.

        Each answer's (time, HTTP status) is appended to *outcomes* if given.
        """
        self.outcomes = outcomes if outcomes is not None else []
        self.app = app
        self.child = child_account_id
        self.credentials = Credentials(app.config.ikey, skey or app.config.skey)
        self.calls = 0

    async def get(self, path: str, params: dict[str, str]) -> DuoAnswer:
        """Return the ``response`` of a signed GET, or raise as duo_client."""
        if self.child is not None:
            params = {**params, "account_id": self.child}
        return await self._call("GET", path, params)

    async def list_child_accounts(self) -> list[dict[str, Any]]:
        """Return the fake's MSP children."""
        answer = await self._call("POST", "/accounts/v1/account/list", {})
        assert isinstance(answer.body, list)
        return answer.body

    async def _call(self, method: str, path: str, params: dict[str, str]) -> DuoAnswer:
        self.calls += 1
        what = f"{method} {path}"
        date = email.utils.formatdate(usegmt=False).replace("-0000", "-0000")
        body = b""
        query = ""
        if method == "GET":
            query = urllib.parse.urlencode(sorted(params.items()))
        else:
            body = json.dumps(params, sort_keys=True, separators=(",", ":")).encode()
        signed = SignedRequest(
            method=method,
            host=HOST,
            path=path,
            params={k: [v] for k, v in params.items()} if method == "GET" else {},
            body=body,
            date=date,
        )
        headers = {
            "host": HOST,
            "date": date,
            "authorization": sign(self.credentials, signed),
        }
        if body:
            headers["content-type"] = "application/json"
        target = f"{path}?{query}" if query else path
        plan = self.app.handle(Request(method, target, "HTTP/1.1", headers, body))
        try:
            with trio.fail_after(CALL_TIMEOUT):  # as ThreadedDuoApi does
                await trio.sleep(plan.delay)
        except trio.TooSlowError:
            msg = f"{what}: no answer within {CALL_TIMEOUT:g} s"
            raise TransientApiError(msg) from None
        if plan.drop is not None:
            raise TransientApiError(f"{what}: Remote end closed connection")
        response = plan.response
        self.outcomes.append((trio.current_time(), response.status))
        if response.status != 200:
            reason = "Too Many Requests" if response.status == 429 else "Error"
            raise classify(
                duo_client_error(response.status, reason, response.body),
                what,
                child="account_id" in params and method == "GET",
            ) from None
        try:
            document = json.loads(response.body)
        except ValueError as exc:
            raise classify(exc, what) from None
        dated = parse_http_date(dict(response.headers).get("Date"))
        return DuoAnswer(document["response"], dated)
