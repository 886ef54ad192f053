"""The message catalogues: template, Simplified Chinese translation and compiled .mo agree
with the source and with each other, so a changed string cannot silently stay English."""

from __future__ import annotations

import gettext
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import msgfmt  # noqa: E402
import xgettext  # noqa: E402

LOCALE = ROOT / "tkshm" / "locale"
PO = LOCALE / "zh_CN" / "LC_MESSAGES" / "tkshm.po"
MO = LOCALE / "zh_CN" / "LC_MESSAGES" / "tkshm.mo"
PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def messages(po_text: str) -> set[str]:
    return {m for m in msgfmt.parse_po(po_text.replace('msgstr ""\n\n', 'msgstr "-"\n\n')) if m}


def test_template_lists_every_string_marked_in_the_source() -> None:
    current = messages(xgettext.template() + "\n")
    committed = messages((LOCALE / "tkshm.pot").read_text(encoding="utf-8") + "\n")
    assert current == committed, "run: python scripts/xgettext.py"
    assert "Unable to attach to shared memory segment.\nLoad an image first." in current


def test_every_message_has_a_real_chinese_translation_with_the_same_placeholders() -> None:
    template = messages((LOCALE / "tkshm.pot").read_text(encoding="utf-8") + "\n")
    catalog = msgfmt.parse_po(PO.read_text(encoding="utf-8"))
    for message in template:
        translated = catalog.get(message, "")
        assert translated and translated != message, f"untranslated: {message!r}"
        assert re.search(r"[\u4e00-\u9fff]", translated), f"no Chinese in {translated!r}"
        assert sorted(PLACEHOLDER.findall(translated)) == sorted(PLACEHOLDER.findall(message)), message
        assert translated.count("\n") == message.count("\n"), message


def test_committed_mo_is_compiled_from_the_po() -> None:
    compiled = msgfmt.make_mo(msgfmt.parse_po(PO.read_text(encoding="utf-8")))
    assert MO.read_bytes() == compiled, "run: python scripts/msgfmt.py"


def test_mo_reads_back_through_gettext() -> None:
    catalog = gettext.GNUTranslations(io.BytesIO(MO.read_bytes()))
    assert catalog.gettext("Load Image From File...") == "从文件加载图片..."
    assert catalog.gettext("Unable to attach to shared memory segment.\nLoad an image first.") == (
        "无法附加到共享内存段。\n请先加载一张图片。"
    )
    assert catalog.info()["content-type"] == "text/plain; charset=UTF-8"


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU gettext is not installed")
def test_gnu_msgfmt_accepts_the_po_and_agrees_with_our_compiler(tmp_path: Path) -> None:
    gnu = tmp_path / "gnu.mo"
    subprocess.run(["msgfmt", "--check-format", "-o", str(gnu), str(PO)], check=True)
    ours = gettext.GNUTranslations(io.BytesIO(MO.read_bytes()))
    theirs = gettext.GNUTranslations(io.BytesIO(gnu.read_bytes()))
    assert ours._catalog == theirs._catalog  # type: ignore[attr-defined]


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
