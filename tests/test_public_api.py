"""What ``from sockworks import ...`` gives a program (docs/api.md).

A program that embeds sockworks imports only the package: the names below
must be reachable from it without touching an internal module.
"""

from __future__ import annotations

import sockworks
from sockworks.models import FORKING_MODELS, MODELS
from sockworks.protocols import lines


def test_model_names_are_public() -> None:
    assert sockworks.MODELS is MODELS
    assert sockworks.FORKING_MODELS is FORKING_MODELS
    assert set(FORKING_MODELS) <= set(MODELS)


def test_line_framer_events_reachable_from_the_class() -> None:
    framer = sockworks.LineFramer(max_line=4)
    framer.receive_data(b"ab")
    assert framer.next_event() is sockworks.LineFramer.NEED_DATA is lines.NEED_DATA
    framer.receive_data(b"cde")
    assert framer.next_event() is sockworks.LineFramer.LINE_TOO_LONG is lines.LINE_TOO_LONG
    closing = sockworks.LineFramer(max_line=4)
    closing.receive_data(b"")
    assert closing.next_event() is sockworks.LineFramer.CLOSED is lines.CLOSED


def test_everything_in_all_is_importable() -> None:
    for name in sockworks.__all__:
        assert getattr(sockworks, name) is not None, name
