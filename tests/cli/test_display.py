"""The ls table prints every name on one line and in its own order (issue 21: newline and right-to-left
override characters in file names)."""

from __future__ import annotations

import io

import pytest

from giblet_store.cli.display import print_table, printable


@pytest.mark.parametrize("name, shown", [
    ("a\nb.wav", "a\\nb.wav"),
    ("evil\u202egnp.wav", "evil\\u202egnp.wav"),  # would print as "evilvaw.png"
    ("tab\there\r.wav", "tab\\there\\r.wav"),
    ("\x1b[31mred.wav", "\\x1b[31mred.wav"),  # a terminal escape sequence
    ("caf\udce9.wav", "caf\\udce9.wav"),  # a lone surrogate from a Latin-1 name
    ("back\\nslash.wav", "back\\\\nslash.wav"),  # a name that spells an escape is not one
    ("café é ü.wav", "café é ü.wav"),  # printable text is left alone
])
def test_printable_escapes_what_breaks_or_reorders_a_line(name, shown):
    assert printable(name) == shown


class _Entry:
    def __init__(self, source):
        self.key, self.kind, self.path = "ab" * 32, "codes", "codes/abababababababab"
        self.attrs = {"source_name": source, "tr_s": 1.5}


def test_the_table_keeps_one_line_per_entry():
    out = io.StringIO()
    print_table([_Entry("x\nKEY  fake\u202egnp.wav"), _Entry("ok.wav")], file=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\u202e" not in out.getvalue()
    assert "x\\nKEY  fake\\u202egnp.wav" in lines[1]
