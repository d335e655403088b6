"""Process tuning: what is alive after the imports is left out of the cyclic GC."""

from __future__ import annotations

import gc

from runboard.runtime import freeze_imported_objects


def test_freezing_leaves_the_imported_objects_out_of_collections() -> None:
    frozen = freeze_imported_objects()
    assert frozen == gc.get_freeze_count() > 10_000
    # What was alive before is not in any generation a collection walks.
    assert gc.is_tracked(freeze_imported_objects)
    assert not any(o is freeze_imported_objects for o in gc.get_objects())


def test_the_asgi_application_freezes_on_import() -> None:
    import runboard.asgi  # noqa: F401

    assert gc.get_freeze_count() > 0
