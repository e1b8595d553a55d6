"""`giblet-store ls` tables (cli/display.py): the columns tell entries apart (issue 20 item 12), and every
name prints on one line and in its own order (issue 21: newline and right-to-left override characters)."""

from __future__ import annotations

import io

import pytest

from giblet_store.cli.display import print_table, printable
from giblet_store.testing import synth_audio, write_wav

FAST = ["--chunk-seconds", "1", "--context-seconds", "0.5"]


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


@pytest.fixture(scope="module")
def st(tmp_path_factory, model_dir):
    from giblet_store.cli import main

    d = tmp_path_factory.mktemp("ls")
    wav = write_wav(d / "movie.wav", synth_audio(4.0, 24000, seed=3), 24000)
    for onset, bw in (("0", "1.5"), ("1.5", "1.5"), ("0", "3")):  # run 1 and run 2 of one movie, another bandwidth
        assert main(["extract", str(wav), "--store", str(d / "st"), "--model", str(model_dir), "--bandwidth", bw,
                     "--onset", onset, *FAST]) == 0
    return d / "st"


def _table(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()]


def test_ls_shows_what_tells_entries_apart(run, st):
    code, out, err = run("ls", st)
    assert code == 0, err
    rows = _table(out)
    head = rows[0]
    assert head[:2] == ["KEY", "KIND"] and head[-1] == "PATH"
    assert {"SOURCE", "MODEL", "KBPS", "ONSET_S", "TR_S", "N_TRS"} <= set(head)
    cells = [dict(zip(head, r)) for r in rows[1:]]
    # every row differs in what is shown besides the key and path (run 1 and run 2 differed only in the key before)
    shown = {tuple(v for k, v in c.items() if k not in ("KEY", "PATH")) for c in cells}
    assert len(shown) == 3
    assert sorted((c["KBPS"], c["ONSET_S"]) for c in cells) == [("1.5", "0"), ("1.5", "1.5"), ("3", "0")]


def test_ls_columns_chooses_labels_attributes_and_refuses_unknown_ones(run, st):
    code, out, err = run("ls", st, "--columns", "kbps,onset_s,frames_per_tr,inputs.codec.bandwidth_kbps")
    assert code == 0, err
    rows = _table(out)
    assert rows[0] == ["KBPS", "ONSET_S", "FRAMES_PER_TR", "INPUTS.CODEC.BANDWIDTH_KBPS"] and len(rows) == 4
    assert all(r[0] == r[3] for r in rows[1:])
    code, out, err = run("ls", st, "--columns", "key,bandwith")
    assert code == 2 and "no listed entry has a column 'bandwith'" in err and "bandwidth_kbps" in err
