"""Shared fixtures. Tests run offline (`make test` sets HF_HUB_OFFLINE=1); the reference is built once per worker."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def reference():
    from c1p1.reference import load_reference

    return load_reference(verbose=False)
