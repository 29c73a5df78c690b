from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.render_pool import RenderPool


@pytest.fixture
def pool() -> Iterator[RenderPool]:
    """A pool of one rendering worker, replaced at once when it fails."""
    p = RenderPool(workers=1, respawn_after_s=0.0)
    try:
        yield p
    finally:
        p.close()
