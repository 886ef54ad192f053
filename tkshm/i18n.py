"""The window's and the demo's two languages, through :mod:`gettext`.

English is the source language: the strings in the code are English, marked with ``tr()``
(named after Qt's ``tr()``). ``tkshm/locale`` holds the Simplified Chinese catalogue,
made with Babel (``pybabel extract``/``update``/``compile``, see the README).
No tkinter here: ``tkshm demo`` speaks the same language in the terminal.
"""

from __future__ import annotations

import gettext
import os
from typing import Final

DOMAIN: Final = "tkshm"
LOCALE_DIR: Final = os.path.join(os.path.dirname(os.path.abspath(__file__)), "locale")


def translation(lang: str | None = None) -> gettext.NullTranslations:
    """The catalogue for ``lang`` ("en", "zh_CN", also "zh" or "zh-CN"), or for the system
    locale (``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``) when ``lang`` is None.

    An unknown language falls back to the English strings rather than failing.
    """
    languages = None
    if lang:
        normal = lang.replace("-", "_")
        languages = ["zh_CN"] if normal.lower() in ("zh", "zh_cn", "zh_hans") else [normal]
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=languages, fallback=True)
