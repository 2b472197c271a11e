"""`make demo` runs the seed tour: its cells must keep running and showing what the chapter
shows."""

import re

from kiln.tour import run_cells


def test_the_tour_runs_the_chapter(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)   # export() writes my_mlp-* here
    ns = run_cells()
    out = capsys.readouterr().out
    assert "\n10\n" in out                                     # fancy_func(1, 2, 3, 4)
    assert "%1 = const {value=array(10, dtype=int64)}" in out  # folded by kiln.jit
    assert re.search(r"Without hybridization: \d+\.\d{4} sec", out)
    assert re.search(r"With hybridization: \d+\.\d{4} sec", out)
    assert (tmp_path / "my_mlp-symbol.json").exists() and (tmp_path / "my_mlp-0000.params").exists()
    assert out.count("module F:  <module 'kiln.ndarray'") == 1    # the eager call
    assert out.count("module F:  <module 'kiln.symbol'") == 1     # tracing, once
    assert "SymbolicValueError: asnumpy is not available on a Symbol" in out
    assert "npx.cond" in out and "npx.while_loop" in out       # exercise 2's message
    assert "cond_net" in ns
