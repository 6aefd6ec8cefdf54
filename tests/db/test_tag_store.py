"""The tag store's SQL on both engines (``engine_db``): the same statements, the same answers."""

from __future__ import annotations

from typing import Any

import pytest

from kvdesk.core.errors import KvdeskError
from kvdesk.core.tags.store import StoredRule, TagRow, TagState, TagStore, TagSummary

NOW = "2026-01-01T00:00:00.000+00:00"


def _value(db: Any, identifier: str) -> int:
    with db.transaction() as tx:
        row = tx.execute(
            "INSERT INTO value(identifier, title, media_type, current_version, created_at,"
            " updated_at) VALUES (?, ?, 'text/plain', 1, ?, ?) RETURNING id",
            (identifier, identifier, NOW, NOW),
        ).fetchone()
    return int(row[0])


def test_states_rows_and_names(engine_db: Any) -> None:
    store = TagStore(engine_db)
    a, b = _value(engine_db, "DOC-A"), _value(engine_db, "DOC-B")
    with engine_db.transaction() as tx:
        store.set_state(tx, a, "  Finance ", TagState.ACCEPTED, "ann")
        store.set_state(tx, a, "finance::tax", TagState.REJECTED, "bob", at=NOW)
        store.set_state(tx, b, "FINANCE", TagState.SUGGESTED)  # the same tag, any case
        assert store.tag_id(tx, "finance") == store.tag_id(tx, "Finance", create=False)
        assert store.tag_id(tx, "nowhere", create=False) is None
    assert store.names() == ["Finance", "finance::tax"]
    assert store.names(in_creation_order=True) == ["Finance", "finance::tax"]
    assert store.stored_name("FINANCE") == "Finance" and store.stored_name("x") is None
    assert store.tags_of(a) == ("Finance",)
    assert store.tags_of(a, TagState.REJECTED) == ("finance::tax",)
    assert store.accepted_tags([a, b, a]) == {a: ("Finance",), b: ()}
    assert store.row(a, "finance::tax") == TagRow(TagState.REJECTED, "bob", NOW)
    assert store.row(b, "finance::tax") is None
    assert sorted(store.rows()) == sorted(
        [
            (a, "Finance", TagState.ACCEPTED),
            (a, "finance::tax", TagState.REJECTED),
            (b, "Finance", TagState.SUGGESTED),
        ]
    )
    assert sorted(store.rows(decided_only=True)) == sorted(
        [(a, "Finance", TagState.ACCEPTED), (a, "finance::tax", TagState.REJECTED)]
    )
    assert store.tagged_values("finance") == {a}
    assert store.tagged_values("finance", state=TagState.SUGGESTED) == {b}
    assert store.tagged_values("finance", descendants=True, state=TagState.REJECTED) == {a}
    assert store.tagged_values("fin") == set()


def test_suggested_rows_never_overwrite_and_removal(engine_db: Any) -> None:
    store = TagStore(engine_db)
    a = _value(engine_db, "DOC-A")
    with engine_db.transaction() as tx:
        store.set_state(tx, a, "hr", TagState.ACCEPTED)
        assert store.add_suggested(tx, a, "hr", "kvdesk") is False  # accepted stays
        assert store.add_suggested(tx, a, "legal", "kvdesk") is True
    assert store.tags_of(a) == ("hr",) and store.tags_of(a, TagState.SUGGESTED) == ("legal",)
    with engine_db.transaction() as tx:
        assert store.remove(tx, a, "legal") is True
        assert store.remove(tx, a, "legal") is False
        assert store.remove(tx, a, "never-created") is False
    assert store.names() == ["hr", "legal"]  # removing a row keeps the tag
    with engine_db.transaction() as tx:
        store.clear_value(tx, a)
    assert store.accepted_tags([a]) == {a: ()}


def test_summaries_info_and_rules(engine_db: Any) -> None:
    store = TagStore(engine_db)
    a, b = _value(engine_db, "DOC-A"), _value(engine_db, "DOC-B")
    with engine_db.transaction() as tx:
        store.set_state(tx, a, "ops", TagState.ACCEPTED)
        store.set_state(tx, b, "ops", TagState.REJECTED)
        store.set_info(tx, "ops", description="Operations", color="#00ff00")
        store.set_info(tx, "empty", color="")
        store.add_rule(tx, "ops", "any", "server")
        store.add_rule(tx, "ops", "any", "server")  # ON CONFLICT ... DO NOTHING
        store.add_rule(tx, "ops", "regex", "(unclosed")  # stored as is: rules compile later
    assert store.summaries() == [
        TagSummary("empty", "", "", 0, 0, 0),
        TagSummary("ops", "Operations", "#00ff00", 1, 0, 1),
    ]
    rules = store.rules()
    assert [(r.tag, r.kind, r.pattern) for r in rules] == [
        ("ops", "any", "server"),
        ("ops", "regex", "(unclosed"),
    ]
    assert all(isinstance(r, StoredRule) for r in rules)
    with engine_db.transaction() as tx:
        assert store.remove_rule(tx, rules[0].rule_id) is True
        assert store.remove_rule(tx, rules[0].rule_id) is False
    assert [r.pattern for r in store.rules()] == ["(unclosed"]


def test_an_empty_tag_name_is_refused(engine_db: Any) -> None:
    store = TagStore(engine_db)
    a = _value(engine_db, "DOC-A")
    with pytest.raises(KvdeskError, match="usable tag name"):
        with engine_db.transaction() as tx:
            store.set_state(tx, a, " :: ", TagState.ACCEPTED)
