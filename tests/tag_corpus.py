"""A small tagged corpus for the tag tests: four topics of short documents, the last of each
topic untagged (tests in core, cli and ui build their vaults from it)."""

from __future__ import annotations

import json
import random
from pathlib import Path

TOPICS: dict[str, list[str]] = {
    "food::cooking": "recipe oven bake flour sugar butter simmer garlic onion sauce".split(),
    "finance": "invoice payment budget ledger tax accounting revenue expense audit bank".split(),
    "space::astronomy": "telescope galaxy orbit planet comet nebula stellar sky moon lens".split(),
    "devel::python": "python module import pip package bytecode class wheel venv pyc".split(),
}
COMMON = "report notes document overview general summary version update item list".split()


def make_corpus(path: Path, per_topic: int = 12, seed: int = 3, untagged: int = 1) -> Path:
    """``per_topic`` short docs per topic; the last ``untagged`` of each topic carry no tags."""
    rng = random.Random(seed)
    rows = []
    for topic, words in TOPICS.items():
        for i in range(per_topic):
            body = rng.sample(words, 6) + rng.sample(COMMON, 4)
            rng.shuffle(body)
            name = topic.split("::")[-1]
            rows.append(
                {
                    "_id": f"{name}-{i}",
                    "title": f"{name} {' '.join(body[:2])}",
                    "text": " ".join(body) + ".",
                    "tags": [topic] if i < per_topic - untagged else [],
                }
            )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# English function words: never a tag's evidence terms.
FILLER = "of in to on at by it is as be was were from with into onto upon about"
