"""Every store's schema steps in the order the migration runner applies them.

A schema version is the sum of its stores' steps; within a version, stores run in the order
below (values first: the others refer to it). The store modules are imported when the steps
are first needed, so a store may use what the vault offers without an import cycle.
"""

from __future__ import annotations

import functools
import importlib

from kvdesk.core.db import ReplicatedTable, SchemaStep

# Bump when a store adds a step (a test checks that this matches the steps).
SCHEMA_VERSION = 10

_STORE_MODULES = (
    "kvdesk.core.vault.values",
    "kvdesk.core.tags.store",
    "kvdesk.core.keys.store",
    "kvdesk.core.settings",
    "kvdesk.core.pilot.store",
    "kvdesk.core.golden.store",
    "kvdesk.core.scans.store",
    "kvdesk.core.team.store",
    "kvdesk.core.keys.learned",  # after keys.store: its rows name key sets
)


@functools.cache
def all_steps() -> tuple[SchemaStep, ...]:
    stores = [importlib.import_module(name).SCHEMA for name in _STORE_MODULES]
    order = {id(step): i for i, store in enumerate(stores) for step in store}
    steps = [step for store in stores for step in store]
    return tuple(sorted(steps, key=lambda s: (s.version, order[id(s)])))


def steps_for(version: int, engine: str) -> tuple[SchemaStep, ...]:
    """The steps that take a database of ``engine`` from ``version - 1`` to ``version``."""
    return tuple(s for s in all_steps() if s.version == version and engine in s.engines)


@functools.cache
def replicated_tables() -> tuple[ReplicatedTable, ...]:
    """The tables a desk copies from its team server, parents before children (the order in
    which rows are written; deletes go in reverse)."""
    modules = [importlib.import_module(name) for name in _STORE_MODULES]
    return tuple(t for m in modules for t in getattr(m, "REPLICATED", ()))
