"""``pal bench NAME ...``: a small dispatcher; each benchmark module exposes ``main(argv) -> int``.

Every product benchmark in ``bench/`` is registered here (``python -m bench.X`` runs the same). The
research harnesses (label efficiency, oracle experiments) live in ``research/``, outside the
installed package, and run as ``python -m research.X`` from a source checkout."""

from __future__ import annotations

import importlib
import sys

# name -> (module, one-line description); add a benchmark with one line here.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "annotator-latency": ("bench.annotator_latency", "Enter to next grid painted, in Chromium, prefetch on vs off"),
    "load": ("bench.load", "answers/s under an open-model load vs a one-INSERT endpoint; writes bench/load.{json,md}"),
    "faults": ("bench.faults", "kill workers and the feed consumer, restart PostgreSQL, under load; then audit"),
    "cold-start": ("bench.cold_start", "first claim after a start and a 32-claim burst on a fresh process, 100k items; "
                                       "writes bench/cold_start.{json,md}"),
    "colour-start": ("bench.colour_start", "2,000 colour images: trainer start to first embedding, frozen "
                                           "ResNet-18 vs small CNN; writes bench/colour_start.{json,md}"),
    "oracle-speed": ("bench.oracle_speed", "time to choose one task at 10k, 100k and 1M items; "
                                           "writes bench/oracle_speed.{json,md}"),
    "trainer-throughput": ("bench.trainer_throughput", "the trainer's step against a bare PyTorch loop; "
                                                       "writes bench/trainer_throughput.{json,md}"),
}


def usage() -> str:
    width = max(len(n) for n in BENCHMARKS)
    lines = ["usage: pal bench NAME [options]   (pal bench NAME --help)", "", "benchmarks:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in BENCHMARKS.items()]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(f"pal bench: unknown benchmark {name!r} (one of: {', '.join(BENCHMARKS)})", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[name][0])
    return int(module.main(rest) or 0)
