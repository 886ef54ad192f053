"""The message catalogues: template, Simplified Chinese translation and compiled .mo agree
with the source and with each other, so a changed string cannot silently stay English.

They are made with Babel (``pybabel extract``/``update``/``compile``, see the README), and
checked here with Babel's own extractor and reader, so the test and the tool cannot disagree.
"""

from __future__ import annotations

import gettext
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
LOCALE = ROOT / "tkshm" / "locale"
POT = LOCALE / "tkshm.pot"
PO = LOCALE / "zh_CN" / "LC_MESSAGES" / "tkshm.po"
MO = LOCALE / "zh_CN" / "LC_MESSAGES" / "tkshm.mo"
PLACEHOLDER = re.compile(r"\{[^{}]*\}")
# What ``pybabel extract -k tr`` looks for: Babel's markers (``_``, ``N_``, ...) and ``tr``,
# the window's ``self.tr`` (named after Qt's ``tr()``).
KEYWORDS = {**DEFAULT_KEYWORDS, "tr": None}


def catalogue(path: Path) -> dict[str, str]:
    """msgid -> msgstr of every entry but the header (untranslated ones map to "")."""
    with path.open("rb") as f:
        catalog = read_po(f)
    assert not [m.id for m in catalog if m.fuzzy and m.id], f"fuzzy entries in {path.name}"
    return {str(m.id): str(m.string) for m in catalog if m.id}


def test_template_lists_every_string_marked_in_the_source() -> None:
    found = {message for _, _, message, _, _ in extract_from_dir(str(ROOT / "tkshm"), keywords=KEYWORDS)}
    assert found == set(catalogue(POT)), "run pybabel extract (see the README)"
    assert "Unable to attach to shared memory segment.\nLoad an image first." in found


def test_every_message_has_a_real_chinese_translation_with_the_same_placeholders() -> None:
    template, translated = catalogue(POT), catalogue(PO)
    assert set(translated) == set(template), "run pybabel update (see the README)"
    for message in template:
        chinese = translated[message]
        assert chinese and chinese != message, f"untranslated: {message!r}"
        assert re.search(r"[\u4e00-\u9fff]", chinese), f"no Chinese in {chinese!r}"
        assert sorted(PLACEHOLDER.findall(chinese)) == sorted(PLACEHOLDER.findall(message)), message
        assert chinese.count("\n") == message.count("\n"), message


def test_committed_mo_is_compiled_from_the_po() -> None:
    compiled = gettext.GNUTranslations(io.BytesIO(MO.read_bytes()))._catalog  # type: ignore[attr-defined]
    messages = {key: value for key, value in compiled.items() if key}  # without the header
    assert messages == catalogue(PO), "run pybabel compile (see the README)"


def test_mo_reads_back_through_gettext() -> None:
    catalog = gettext.GNUTranslations(io.BytesIO(MO.read_bytes()))
    assert catalog.gettext("Load Image From File...") == "从文件加载图片..."
    assert catalog.gettext("Unable to attach to shared memory segment.\nLoad an image first.") == (
        "无法附加到共享内存段。\n请先加载一张图片。"
    )
    assert catalog.info()["content-type"].lower() == "text/plain; charset=utf-8"


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU gettext is not installed")
def test_gnu_msgfmt_accepts_the_po_and_agrees_with_babel(tmp_path: Path) -> None:
    gnu = tmp_path / "gnu.mo"
    subprocess.run(["msgfmt", "--check-format", "-o", str(gnu), str(PO)], check=True)
    ours = gettext.GNUTranslations(io.BytesIO(MO.read_bytes()))._catalog  # type: ignore[attr-defined]
    theirs = gettext.GNUTranslations(io.BytesIO(gnu.read_bytes()))._catalog  # type: ignore[attr-defined]
    del ours[""], theirs[""]  # the headers: Babel writes its own (creation date and all)
    assert ours == theirs


@pytest.mark.parametrize(
    ("environment", "expected"),
    [({"LANGUAGE": "zh_CN"}, "从文件加载图片..."), ({"LANG": "zh_CN.UTF-8"}, "从文件加载图片..."),
     ({"LANG": "C"}, "Load Image From File..."), ({"LANG": "de_DE.UTF-8"}, "Load Image From File...")],
)  # fmt: skip
def test_system_locale_chooses_the_language(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: str
) -> None:
    from tkshm.i18n import translation

    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert translation(None).gettext("Load Image From File...") == expected
    assert translation("en").gettext("Load Image From File...") == "Load Image From File..."
    assert translation("zh").gettext("Load Image From File...") == "从文件加载图片..."


def test_catalogue_directory_is_inside_the_package() -> None:
    from tkshm import i18n

    assert os.path.samefile(i18n.LOCALE_DIR, LOCALE)
