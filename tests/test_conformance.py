"""The conformance suite over every registered variant (third-party ones installed here included)."""

import pytest

from ganhub import registry
from ganhub.testing import CHECKS


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", [e.name for e in registry.entries()])
def test_conformance(name, check):
    check(name)
