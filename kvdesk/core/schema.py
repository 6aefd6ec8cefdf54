"""Every store's schema steps in the order the migration runner applies them.

A schema version is the sum of its stores' steps; within a version, stores run in the order
below (values first: the others refer to it).
"""

from __future__ import annotations

from kvdesk.core.db import SchemaStep
from kvdesk.core.golden.store import SCHEMA as GOLDEN
from kvdesk.core.keys.store import SCHEMA as KEYS
from kvdesk.core.pilot.store import SCHEMA as PILOT
from kvdesk.core.settings import SCHEMA as SETTINGS
from kvdesk.core.tags.store import SCHEMA as TAGS
from kvdesk.core.vault.values import SCHEMA as VALUES

_STORES: tuple[tuple[SchemaStep, ...], ...] = (VALUES, TAGS, KEYS, SETTINGS, PILOT, GOLDEN)

STEPS: tuple[SchemaStep, ...] = tuple(
    sorted(
        (step for store in _STORES for step in store),
        key=lambda s: (s.version, [i for i, st in enumerate(_STORES) if s in st][0]),
    )
)
SCHEMA_VERSION = max(step.version for step in STEPS)


def steps_for(version: int, engine: str) -> tuple[SchemaStep, ...]:
    """The steps that take a database of ``engine`` from ``version - 1`` to ``version``."""
    return tuple(s for s in STEPS if s.version == version and engine in s.engines)
