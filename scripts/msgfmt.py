"""Compile gettext catalogues: every ``tkshm/locale/*/LC_MESSAGES/*.po`` into its ``.mo``.

The same job as GNU ``msgfmt`` or CPython's ``Tools/i18n/msgfmt.py`` (which is not installed
with Python), in a few lines, so building tkshm needs nothing outside the standard library.
The ``.mo`` layout (GNU gettext manual, "The Format of GNU MO Files"), all little-endian u32:

======  ==========================================================
offset  field
======  ==========================================================
0       magic 0x950412de
4       format revision 0
8       N, the number of strings
12      offset of the table of original strings (length, offset) x N
16      offset of the table of translations (length, offset) x N
20      size of the hash table (0: none; readers then search the sorted table)
24      offset of the hash table
======  ==========================================================

Originals are sorted (bytewise), NUL-terminated; entry 0 is the header (msgid ""), whose
``Content-Type`` tells readers the charset. Output depends only on the .po file.
"""

from __future__ import annotations

import ast
import glob
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAGIC = 0x950412DE


def parse_po(text: str) -> dict[str, str]:
    """msgid -> msgstr for every translated, non-fuzzy entry (the header included)."""
    catalog: dict[str, str] = {}
    entry: dict[str, str] = {}
    field = ""
    fuzzy = False

    def finish() -> None:
        nonlocal fuzzy
        if "msgid" in entry and entry.get("msgstr") and (not fuzzy or entry["msgid"] == ""):
            catalog[entry["msgid"]] = entry["msgstr"]
        entry.clear()
        fuzzy = False

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("#,") and "fuzzy" in line:
            finish()
            fuzzy = True
        elif not line or line.startswith("#"):
            if "msgstr" in entry:
                finish()
        elif line.startswith(("msgid ", "msgstr ")):
            field, _, rest = line.partition(" ")
            if field == "msgid" and "msgstr" in entry:
                keep, fuzzy_next = fuzzy, False
                finish()
                fuzzy = keep or fuzzy_next
            entry[field] = _literal(rest, number)
        elif line.startswith('"') and field:
            entry[field] += _literal(line, number)
        else:
            raise ValueError(f"line {number}: cannot parse {raw!r} (plural forms and msgctxt are not used)")
    finish()
    return catalog


def _literal(token: str, number: int) -> str:
    if not (token.startswith('"') and token.endswith('"')):
        raise ValueError(f"line {number}: expected a quoted string, got {token!r}")
    value = ast.literal_eval(token)  # PO escapes are C escapes, which Python's agree with here
    assert isinstance(value, str)
    return value


def make_mo(catalog: dict[str, str]) -> bytes:
    """The bytes of a .mo file holding ``catalog``."""
    keys = sorted(catalog, key=lambda k: k.encode("utf-8"))
    ids = b""
    strs = b""
    offsets = []
    for key in keys:
        k, v = key.encode("utf-8"), catalog[key].encode("utf-8")
        offsets.append((len(ids), len(k), len(strs), len(v)))
        ids += k + b"\0"
        strs += v + b"\0"
    count = len(keys)
    key_start = 7 * 4 + 16 * count
    value_start = key_start + len(ids)
    key_table, value_table = [], []
    for id_offset, id_length, str_offset, str_length in offsets:
        key_table += [id_length, key_start + id_offset]
        value_table += [str_length, value_start + str_offset]
    header = struct.pack("<7I", MAGIC, 0, count, 7 * 4, 7 * 4 + 8 * count, 0, 0)
    return header + struct.pack(f"<{4 * count}I", *key_table, *value_table) + ids + strs


def po_files() -> list[str]:
    return sorted(glob.glob(os.path.join(ROOT, "tkshm", "locale", "*", "LC_MESSAGES", "*.po")))


def main() -> int:
    for po in po_files():
        with open(po, encoding="utf-8") as f:
            data = make_mo(parse_po(f.read()))
        mo = po[:-3] + ".mo"
        with open(mo, "wb") as f:
            f.write(data)
        print(f"wrote {os.path.relpath(mo, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
