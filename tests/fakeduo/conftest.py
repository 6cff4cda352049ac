"""Fixtures shared by the fake Duo API's tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.fakeduo.fixtures import admin_client
from trio_dls.fakeduo import FakeDuo, Faults

if TYPE_CHECKING:
    import duo_client


@pytest.fixture
def admin(fake: FakeDuo) -> duo_client.Admin:
    """A real duo_client Admin for the module's ``fake``, its faults cleared.

    It hands back the first 429 instead of sleeping through duo_client's retries.
    """
    fake.faults = Faults()
    return admin_client(fake)
