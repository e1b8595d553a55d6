"""The README's quick start runs as written on the shared recordings, and its Python and CLI halves
make the same entry (only the model, the data folder and the output paths are substituted)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def block(name: str) -> str:
    text = README.read_text()
    m = re.search(rf"<!-- {name} -->\s*```\w*\n(.*?)```\s*<!-- /{name} -->", text, re.S)
    assert m, f"README has no {name} block"
    return m.group(1)


def localise(code: str, model_dir, shared_data, tmp_path) -> str:
    return (code.replace("facebook/encodec_24khz", str(model_dir)).replace("../shared/data", str(shared_data))
            .replace("my_store", str(tmp_path / "my_store")).replace("tr2-5.wav", str(tmp_path / "tr2-5.wav")))


@pytest.mark.data
def test_readme_quick_start_python_and_cli_agree(model_dir, shared_data, tmp_path, capsys):
    from giblet_store import open_store
    from giblet_store.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(localise(block("quickstart-python"), model_dir, shared_data, tmp_path), "README", "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("<Entry codes ") and "source=encodec_test_24k.wav" in lines[0] and "kbps=6" in lines[0]
    assert lines[1:] == ["(3, 8, 113)", "[113 112 113 112]", "[2 3 4]"]
    assert (tmp_path / "tr2-5.wav").stat().st_size > 0
    (entry,) = open_store(tmp_path / "my_store", mode="r").entries()

    (tmp_path / "tr2-5.wav").unlink()
    capsys.readouterr()
    for line in localise(block("quickstart-cli"), model_dir, shared_data, tmp_path).strip().splitlines():
        argv = [a.replace("KEY", entry.key[:12]) for a in shlex.split(line)[1:]]
        assert main(argv) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        if argv[0] == "extract":
            assert out.split()[:2] == [entry.key, "cached"]  # the CLI half finds the Python half's entry
        if argv[0] == "ls":
            assert entry.key[:16] in out
    assert (tmp_path / "tr2-5.wav").stat().st_size > 0


def test_the_cli_synopsis_lists_every_command_with_options_it_has():
    """Issue 20 item 16: the synopsis listed 6 of 18 commands. Every subcommand of build_parser() has a line,
    and every --option on a command's lines is one that command takes."""
    from giblet_store.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    lines: dict[str, str] = {}
    current = None
    for line in block("cli-synopsis").splitlines():
        if m := re.match(r"giblet-store ([a-z-]+)", line):
            current = m.group(1)
        if current:
            lines[current] = lines.get(current, "") + " " + line
    assert set(lines) == set(sub.choices), set(sub.choices) ^ set(lines)
    for name, text in lines.items():
        known = {o for a in sub.choices[name]._actions for o in a.option_strings}
        used = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", text))
        assert used <= known, (name, used - known)
