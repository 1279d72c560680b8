"""``pal bench``: every product benchmark in bench/ is registered, and each answers --help."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from bench import cli

BENCH = Path(__file__).resolve().parents[2] / "bench"
HELPERS = {"cli", "poller"}  # modules with a main() that are not benchmarks


def _modules_with_main() -> set[str]:
    out = set()
    for path in BENCH.glob("*.py"):
        tree = ast.parse(path.read_text())
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            out.add(f"bench.{path.stem}")
    return out - {f"bench.{h}" for h in HELPERS}


def test_every_benchmark_module_is_registered() -> None:
    registered = {module for module, _ in cli.BENCHMARKS.values()}
    assert _modules_with_main() == registered


@pytest.mark.parametrize("name", sorted(cli.BENCHMARKS))
def test_each_benchmark_answers_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(cli.BENCHMARKS[name][0])
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_bench_cli_rejects_an_unknown_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["no-such-benchmark"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


def test_bench_cli_lists_every_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in cli.BENCHMARKS)
