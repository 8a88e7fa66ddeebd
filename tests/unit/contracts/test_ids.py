"""`uuid5_text` is `str(uuid.uuid5(...))`, without the `UUID` object."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from dxtalent_contracts.ids import uuid5_text


@settings(max_examples=500)
@given(namespace=st.uuids(), name=st.text())
def test_uuid5_text_is_the_text_of_uuid5(namespace: uuid.UUID, name: str) -> None:
    """Any namespace (as a `UUID` or its bytes) and any name, non-ASCII included."""
    expected = str(uuid.uuid5(namespace, name))
    assert uuid5_text(namespace, name) == expected
    assert uuid5_text(namespace.bytes, name) == expected
