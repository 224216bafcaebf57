from __future__ import annotations

import pytest

import adamkern


@pytest.fixture(autouse=True)
def _restore_runtime():
    """Tests that switch ISA or threads must not leak the setting into other tests."""
    isa, threads = adamkern.cpu_info()["isa"], adamkern.get_num_threads()
    yield
    adamkern.set_isa(isa)
    adamkern.set_num_threads(threads)
