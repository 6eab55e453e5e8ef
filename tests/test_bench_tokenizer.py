"""make bench's tokenizer section runs, on a slice and a small vocabulary, and finds the three encoders identical."""

from __future__ import annotations

from c1p1.bench_tokenizer import main


def test_bench_tokenizer_runs_on_a_slice(capsys):
    assert main(["--chars", "20000", "--vocab-size", "280", "--naive-merges", "2"]) == 0
    out = capsys.readouterr().out
    assert "identical" in out and "DIFFERENT" not in out
    assert "plain loop recounting" in out and "BpeTrainer" in out
