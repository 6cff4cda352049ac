"""The five Duo log endpoints, by the names duo_log_sync gives them.

This module owns only the names: the config, the paging rules, the formats and
the fake Duo API all refer to an endpoint by one of these values, and the
fetcher and the formats agree on each endpoint's ``eventtype`` through it.
"""

from __future__ import annotations

import enum
from typing import Final


class Endpoint(enum.StrEnum):
    """A Duo log endpoint, named as in a duo_log_sync config file."""

    AUTH = "auth"
    ADMINACTION = "adminaction"
    TELEPHONY = "telephony"
    TRUSTMONITOR = "trustmonitor"
    ACTIVITY = "activity"


# Each endpoint's place in ``Endpoint``'s order: state kept per (account,
# endpoint) by the thousand is a five-slot list per account, indexed by it,
# rather than a dict (a third of the memory).
ENDPOINT_INDEX: Final = {endpoint: index for index, endpoint in enumerate(Endpoint)}

# What duo_client's log helpers put in each record's ``eventtype`` (DLS's JSON
# has it, and its CEF takes signature ids from it); trust monitor records
# carry none.
EVENTTYPES: Final[dict[Endpoint, str | None]] = {
    Endpoint.AUTH: "authentication",
    Endpoint.ADMINACTION: "administrator",
    Endpoint.TELEPHONY: "telephony",
    Endpoint.ACTIVITY: "activity",
    Endpoint.TRUSTMONITOR: None,
}
