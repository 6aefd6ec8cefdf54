"""Identifier keys: found in text, matched OCR-tolerantly, always verified, absent said."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.search.identifiers import canonical, extract, query_identifiers, verify

TEXT = (
    "Invoice INV-2O24-0117 dated 2024-03-05 for order PO 44817. IBAN DE89 3704 0044 0532 0130"
    " 00, questions to billing@acme.example or +49 30 1234567. See DOC-12; mp3 and h2o are"
    " words, and so is 3.5 mm."
)


def test_identifiers_of_every_kind_are_found_and_words_are_not() -> None:
    found = {i.raw: i.kind for i in extract(TEXT)}
    assert found["INV-2O24-0117"] == "code" and found["PO 44817"] == "code"
    assert found["DE89 3704 0044 0532 0130 00"] == "iban"
    assert found["billing@acme.example"] == "email" and found["2024-03-05"] == "date"
    assert found["+49 30 1234567"] == "phone" and found["DOC-12"] == "code"
    assert not {"mp3", "h2o", "3.5", "and 3.5"} & set(found)


@pytest.mark.parametrize(
    ("typed", "corrections"),
    [("INV-2O24-0117", 0), ("inv-2o24-0117", 0), ("INV20240117", 1), ("INV-2024-0117", 1),
     ("1NV-2024-O117", 3)],  # fmt: skip
)
def test_ocr_confusions_match_and_say_what_was_corrected(typed: str, corrections: int) -> None:
    (query,) = query_identifiers(typed)
    match = verify(query, extract(TEXT))
    assert match is not None and match.stored == "INV-2O24-0117"
    assert match.corrections == corrections
    assert ("exact" in match.describe()) == (corrections == 0)


def test_a_different_number_never_matches() -> None:
    for typed in ("INV-2024-0118", "INV-2024-01170", "PO 44818"):
        (query,) = query_identifiers(typed)
        assert verify(query, extract(TEXT)) is None
    assert canonical("INV-2O24-0117") == canonical("inv 2024 0117")


def _vault(tmp_path: Path) -> KnowledgeBase:
    records = tmp_path / "invoices.jsonl"
    rows = [
        ("a", "Invoice from ACME", "Invoice INV-2O24-0117 for printer toner, 300 EUR."),
        ("b", "Invoice from Bolt", "Invoice INV-2024-0118 for paper; 2024 and 0117 as words."),
        ("c", "Printer manual", "Replace the printer toner INV yearly, 2024 edition."),
    ]
    records.write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in rows),
        encoding="utf-8",
    )
    kb = KnowledgeBase.open(tmp_path / "v.kvdb")
    kb.import_records(records)
    return kb


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_a_query_naming_an_identifier_finds_its_holder_first_verified(
    tmp_path: Path, mode: str
) -> None:
    with _vault(tmp_path) as kb:
        result = kb.search("toner INV-2024-0117", mode=mode)
        top = result.hits[0]
        assert top.external_id == "a" and top.explanation.identifiers is not None
        (match,) = top.explanation.identifiers.matches
        assert (match.stored, match.corrections) == ("INV-2O24-0117", 1)
        assert "read in the document as INV-2O24-0117, 1 character corrected" in match.describe()
        # The other documents share words and digits, but claim no identifier.
        assert all(h.explanation.identifiers is None for h in result.hits[1:])
        data = result.to_json(explain=True)
        assert data["hits"][0]["explanation"]["identifiers"]["matches"][0]["stored"] == (
            "INV-2O24-0117"
        )


def test_an_identifier_no_document_holds_is_said_absent_never_guessed(tmp_path: Path) -> None:
    with _vault(tmp_path) as kb:
        result = kb.search("INV-2099-0001", mode="hybrid")
        assert result.hits == () and result.absent_identifiers == ("INV-2099-0001",)
        assert result.to_json()["absent_identifiers"] == ["INV-2099-0001"]
        held = kb.search("INV-2024-0118")
        assert [h.external_id for h in held.hits] == ["b"] and "absent_identifiers" not in (
            held.to_json()
        )


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("INV-20Z2-5B27", "INV-2022-5827"), ("INV-Z022-1692", "INV-2022-1692"),
     ("INV 2024 0117", "INV-2024-0117"), ("INV\u20132024\u20130117", "INV-2024-0117")],  # fmt: skip
)
def test_confusions_in_every_group_spaces_and_dashes_still_name_the_number(
    typed: str, stored: str
) -> None:
    (query,) = query_identifiers(typed)
    match = verify(query, extract(f"Invoice {stored} of March"))
    assert match is not None and match.stored == stored


def test_amounts_and_dates_are_not_invoice_numbers() -> None:
    assert not [i for i in extract("Total EUR 2,832.93 and 1,200.00") if i.kind == "code"]
    (query,) = query_identifiers("INV 2025 0419")
    assert verify(query, extract("Delivered on 2025-04-19.")) is None
