"""The five Duo log endpoints, by the names duo_log_sync gives them.

This module owns only the names: the config, the paging rules, the formats and
the fake Duo API all refer to an endpoint by one of these values.
"""

from __future__ import annotations

import enum


class Endpoint(enum.StrEnum):
    """A Duo log endpoint, named as in a duo_log_sync config file."""

    AUTH = "auth"
    ADMINACTION = "adminaction"
    TELEPHONY = "telephony"
    TRUSTMONITOR = "trustmonitor"
    ACTIVITY = "activity"
