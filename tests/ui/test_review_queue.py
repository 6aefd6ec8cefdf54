"""The tag review queue, driven from the keyboard on a small tagged corpus (lexical evidence)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from PySide6.QtCore import Qt

from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.ui.review_queue import ACCEPTED, AUTO, PENDING, REJECTED, ReviewQueue
from kvdesk.ui.tasks import TaskRunner
from tests.tag_corpus import make_corpus


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    base = KnowledgeBase.open(tmp_path / "v.kvdb")
    # 6 documents per topic, the last 2 of each untagged: they get the suggestions.
    base.import_records(make_corpus(tmp_path / "corpus.jsonl", per_topic=6, untagged=2))
    yield base
    base.close()


@pytest.fixture
def queue(qtbot, kb: KnowledgeBase) -> Iterator[ReviewQueue]:  # type: ignore[no-untyped-def]
    runner = TaskRunner()
    widget = ReviewQueue(
        lambda: kb, runner, suggester_factory=lambda base: base.tags.suggester(use_dense=False)
    )
    qtbot.addWidget(widget)
    widget.resize(1200, 560)
    widget.show()
    widget.activateWindow()
    qtbot.waitUntil(widget.isActiveWindow)
    with qtbot.waitSignal(widget.loaded, timeout=20_000):
        widget.refresh()
    yield widget
    assert runner.shutdown()
    assert not runner._writer.activeThreadCount() and not runner._reader.activeThreadCount()


def vid(kb: KnowledgeBase, external_id: str) -> int:
    return kb.values.resolve(external_id)


def press(
    qtbot,
    queue: ReviewQueue,
    key: Qt.Key,
    state: str | None = None,  # type: ignore[no-untyped-def]
    modifier: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier,
) -> None:
    queue.tree.setFocus()
    if state is None:
        qtbot.keyClick(queue.tree, key, modifier)
        return
    with qtbot.waitSignal(queue.applied, timeout=10_000) as blocker:
        qtbot.keyClick(queue.tree, key, modifier)
    assert blocker.args[0] == state


def test_suggestions_are_listed_with_evidence_grouped_by_tag_or_document(
    queue: ReviewQueue, kb: KnowledgeBase
) -> None:
    untagged = {
        vid(kb, f"{t}-{i}") for t in ("cooking", "finance", "astronomy", "python") for i in (4, 5)
    }
    # Every untagged document gets its topic's tag; weak noise below the floor is not listed.
    listed = {e.key for e in queue.entries}
    for name, tag in (
        ("cooking", "food::cooking"),
        ("finance", "finance"),
        ("astronomy", "space::astronomy"),
        ("python", "devel::python"),
    ):
        for i in (4, 5):
            assert (vid(kb, f"{name}-{i}"), tag) in listed
    assert {e.value_id for e in queue.entries} == untagged
    assert all(e.confidence >= queue.min_confidence for e in queue.entries)
    assert queue.counts()[PENDING] == len(queue.entries) and not queue.auto_box.isChecked()

    # Grouped by tag: one header per tag, the documents beneath with the evidence beside them.
    heads = {h.text(0): h for h in queue.group_items()}
    assert "food::cooking  (2)" in heads
    cooking = heads["food::cooking  (2)"]
    assert {cooking.child(i).text(0).split(" · ")[0] for i in range(2)} == {
        kb.values.get(vid(kb, "cooking-4")).identifier,
        kb.values.get(vid(kb, "cooking-5")).identifier,
    }
    evidence = cooking.child(0).text(3)
    assert "similar to DOC-" in evidence and "terms: " in evidence

    # Selecting a suggestion shows its full evidence in the side panel.
    queue.select_entry(vid(kb, "finance-4"), "finance")
    shown = queue.evidence_view.toPlainText()
    entry = queue.current_entry()
    assert entry is not None and entry.tag == "finance"
    assert all(line in shown for line in entry.evidence)
    assert f"Confidence {entry.confidence:.2f}" in shown

    # Toggle: grouped by document, the tags are the rows.
    queue.set_grouping("document")
    heads = {h.text(0): h for h in queue.group_items()}
    record = kb.values.get(vid(kb, "finance-4"))
    head = next(h for name, h in heads.items() if name.startswith(record.identifier + " · "))
    assert "finance" in [head.child(i).text(0) for i in range(head.childCount())]
    assert queue.current_entry() == entry  # the selection survives the regrouping


def test_a_accepts_and_the_tag_becomes_a_search_key(
    qtbot,
    queue: ReviewQueue,
    kb: KnowledgeBase,  # type: ignore[no-untyped-def]
) -> None:
    doc = vid(kb, "finance-4")
    assert doc not in {h.value_id for h in kb.search("tag:finance", k=50, mode="lexical").hits}
    queue.select_entry(doc, "finance")
    press(qtbot, queue, Qt.Key.Key_A, "accepted")
    assert kb.tags.of(doc) == ("finance",)
    assert queue.status[(doc, "finance")] == ACCEPTED
    assert queue.item_for(doc, "finance").text(2) == "accepted"  # type: ignore[union-attr]
    # The cursor moved on to the next suggestion still to review.
    nxt = queue.current_entry()
    assert nxt is not None and queue.status[nxt.key] == PENDING
    # Accepted tags are keys: tag:finance now finds the document.
    hits = kb.search("tag:finance", k=50, mode="lexical").hits
    assert doc in {h.value_id for h in hits}


def test_r_rejects_and_the_tag_is_never_suggested_again(
    qtbot,
    queue: ReviewQueue,
    kb: KnowledgeBase,  # type: ignore[no-untyped-def]
) -> None:
    doc = vid(kb, "cooking-4")
    queue.select_entry(doc, "food::cooking")
    press(qtbot, queue, Qt.Key.Key_R, "rejected")
    assert kb.tags.of(doc, "rejected") == ("food::cooking",)
    assert kb.tags.of(doc) == ()
    assert queue.status[(doc, "food::cooking")] == REJECTED
    with qtbot.waitSignal(queue.loaded, timeout=20_000):
        queue.refresh()
    assert (doc, "food::cooking") not in {e.key for e in queue.entries}
    assert "food::cooking" not in [s.tag for s in kb.tags.suggester(use_dense=False).suggest(doc)]


def test_undo_reverts_accept_and_reject(
    qtbot,
    queue: ReviewQueue,
    kb: KnowledgeBase,  # type: ignore[no-untyped-def]
) -> None:
    a, b = vid(kb, "python-4"), vid(kb, "python-5")
    queue.select_entry(a, "devel::python")
    press(qtbot, queue, Qt.Key.Key_A, "accepted")
    assert kb.tags.of(a) == ("devel::python",)
    press(qtbot, queue, Qt.Key.Key_Z, "undone", Qt.KeyboardModifier.ControlModifier)
    assert kb.tags.of(a) == ()
    assert queue.status[(a, "devel::python")] == PENDING
    assert queue.current_entry() is not None and queue.current_entry().key == (a, "devel::python")  # type: ignore[union-attr]

    queue.select_entry(b, "devel::python")
    press(qtbot, queue, Qt.Key.Key_R, "rejected")
    assert kb.tags.of(b, "rejected") == ("devel::python",)
    press(qtbot, queue, Qt.Key.Key_Z, "undone", Qt.KeyboardModifier.ControlModifier)
    assert kb.tags.of(b, "rejected") == () and kb.tags.of(b) == ()
    assert not queue.undo_stack and not queue.undo_button.isEnabled()
    # With the rejection forgotten, the tag is proposed again.
    with qtbot.waitSignal(queue.loaded, timeout=20_000):
        queue.refresh()
    assert (b, "devel::python") in {e.key for e in queue.entries}


def test_bulk_accept_of_a_tag_for_a_selection(
    qtbot,
    queue: ReviewQueue,
    kb: KnowledgeBase,  # type: ignore[no-untyped-def]
) -> None:
    head = next(h for h in queue.group_items() if h.text(0).startswith("space::astronomy  "))
    queue.tree.clearSelection()
    head.setSelected(True)
    press(qtbot, queue, Qt.Key.Key_A, "accepted", Qt.KeyboardModifier.ShiftModifier)
    for i in (4, 5):
        assert kb.tags.of(vid(kb, f"astronomy-{i}")) == ("space::astronomy",)
    # One undo step takes the whole bulk accept back.
    press(qtbot, queue, Qt.Key.Key_Z, "undone", Qt.KeyboardModifier.ControlModifier)
    assert all(kb.tags.of(vid(kb, f"astronomy-{i}")) == () for i in (4, 5))

    # A multi-selection of documents under different tags, restricted to one tag.
    queue.tree.clearSelection()
    for name, tag in (
        ("finance-4", "finance"),
        ("finance-5", "finance"),
        ("python-4", "devel::python"),
    ):
        queue.item_for(vid(kb, name), tag).setSelected(True)  # type: ignore[union-attr]
    with qtbot.waitSignal(queue.applied, timeout=10_000):
        queue.accept_selected("finance")
    assert kb.tags.of(vid(kb, "finance-4")) == ("finance",)
    assert kb.tags.of(vid(kb, "finance-5")) == ("finance",)
    assert kb.tags.of(vid(kb, "python-4")) == ()


def test_auto_accept_threshold_is_off_by_default_and_accepts_confident_ones(
    qtbot,
    queue: ReviewQueue,
    kb: KnowledgeBase,  # type: ignore[no-untyped-def]
) -> None:
    assert not queue.auto_box.isChecked() and not queue.auto_spin.isEnabled()
    assert all(not kb.tags.of(vid(kb, f"cooking-{i}")) for i in (4, 5))
    threshold = 0.24  # tags of only 4 examples: confidence is held down (at most 4 / (4 + 4))
    confident = {e.key for e in queue.entries if e.confidence >= threshold}
    assert confident and len(confident) < len(queue.entries)
    queue.auto_spin.setValue(threshold)
    with qtbot.waitSignal(queue.applied, timeout=10_000):
        queue.auto_box.setChecked(True)
    for e in queue.entries:
        if e.key in confident:
            assert queue.status[e.key] == AUTO
            assert queue.item_for(*e.key).text(2) == "auto-accepted"  # type: ignore[union-attr]
            assert e.tag in kb.tags.of(e.value_id)
        else:
            assert queue.status[e.key] == PENDING
            assert e.tag not in kb.tags.of(e.value_id)
    actors = {
        r[0]
        for r in kb._vault.conn.execute(
            "SELECT actor FROM value_tag WHERE state = 'accepted' AND actor = 'auto'"
        )
    }
    assert actors == {"auto"}


def test_j_k_and_arrows_move_between_suggestions(qtbot, queue: ReviewQueue) -> None:  # type: ignore[no-untyped-def]
    items = queue._suggestion_items()
    queue.tree.setCurrentItem(items[0])
    press(qtbot, queue, Qt.Key.Key_J)
    assert queue.tree.currentItem() is items[1]
    press(qtbot, queue, Qt.Key.Key_Down)
    assert queue.tree.currentItem() is items[2]  # group headers are skipped
    press(qtbot, queue, Qt.Key.Key_K)
    press(qtbot, queue, Qt.Key.Key_Up)
    assert queue.tree.currentItem() is items[0]


def test_screenshot(qtbot, queue: ReviewQueue, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    queue.select_entry(queue.entries[1].value_id, queue.entries[1].tag)
    press(qtbot, queue, Qt.Key.Key_A, "accepted")
    press(qtbot, queue, Qt.Key.Key_R, "rejected")
    image = queue.grab()
    assert not image.isNull() and image.width() >= 1000
    target = os.environ.get("KVDESK_REVIEW_SCREENSHOT") or str(tmp_path / "review.png")
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    assert image.save(target)


def test_main_window_opens_the_queue_with_ctrl_shift_t(qtbot, sample_vault: Path) -> None:  # type: ignore[no-untyped-def]
    from .conftest import close_window, make_window

    # Curate two policies, so the third one (and others) get "policy" suggested.
    with KnowledgeBase.open(sample_vault) as base:
        ids = {Path(r.source_path or r.title).name: r.id for r in base.values.list_values()}
        for name in ("travel-expense-policy.md", "it-security-handbook.html"):
            base.set_tag(ids[name], "policy", "accepted", "test")
        remote = ids["remote-work-policy.txt"]
    window = make_window(qtbot, sample_vault)
    try:
        assert window.review_queue is None and not window.tabs.tabBar().isVisible()
        window.activateWindow()
        qtbot.waitUntil(window.isActiveWindow)
        window.search_edit.setFocus()
        qtbot.keyClick(
            window.search_edit,
            Qt.Key.Key_T,
            Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
        )
        queue = window.review_queue
        assert isinstance(queue, ReviewQueue)
        assert window.tabs.currentWidget() is queue and window.tabs.tabBar().isVisible()
        qtbot.waitUntil(lambda: bool(queue.entries), timeout=30_000)
        entry = queue.entry((remote, "policy"))
        assert entry is not None and any(e.startswith("similar to") for e in entry.evidence)
        queue.select_entry(remote, "policy")
        with qtbot.waitSignal(window.tagsUpdated, timeout=10_000) as updated:
            press(qtbot, queue, Qt.Key.Key_A)
        assert updated.args == [remote]
        assert window.session.kb.tags.of(remote) == ("policy",)
        window._close_tab(window.tabs.indexOf(queue))
        assert window.review_queue is None and window.tabs.count() == 1
        assert window.wait_idle()
    finally:
        close_window(window)


def test_undo_puts_back_a_stored_suggestion_exactly(
    qtbot,
    queue: ReviewQueue,
    kb: KnowledgeBase,  # type: ignore[no-untyped-def]
) -> None:
    """A 'suggested' row stored earlier (by another review, say) survives accept + undo."""
    a = vid(kb, "cooking-4")
    kb.set_tag(a, "food::cooking", "suggested", "earlier-review")
    before = kb.tags.row(a, "food::cooking")
    assert before is not None and before.state == "suggested"
    queue.select_entry(a, "food::cooking")
    press(qtbot, queue, Qt.Key.Key_A, "accepted")
    after_accept = kb.tags.row(a, "food::cooking")
    assert after_accept is not None and after_accept.state == "accepted"
    press(qtbot, queue, Qt.Key.Key_Z, "undone", Qt.KeyboardModifier.ControlModifier)
    assert kb.tags.row(a, "food::cooking") == before
    assert kb.tags.of(a) == ()
