"""The plugin's own test: ganhub's conformance suite, free for every plugin."""

from ganhub.testing import check_variant


def test_conformance():
    check_variant("lsgan")
