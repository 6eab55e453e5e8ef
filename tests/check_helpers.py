"""Assertions used by every test of a check: it passes, it fails with a keyword, it says 'not done'."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from c1p1.checks.core import CheckFailed, NotDoneYet


def fails(check: Callable, thing: object, *keywords: str) -> str:
    """The check must reject `thing` with a message that names the cause (every keyword, any case)."""
    with pytest.raises(CheckFailed) as info:
        check(thing)
    message = str(info.value)
    for word in keywords:
        assert word.lower() in message.lower(), f"expected {word!r} in the message:\n{message}"
    assert "Traceback" not in message
    return message


def not_done(check: Callable, thing: object) -> str:
    with pytest.raises(NotImplementedError) as info:
        check(thing)
    assert isinstance(info.value, NotDoneYet)
    assert "YOUR CODE HERE" in str(info.value)
    return str(info.value)
