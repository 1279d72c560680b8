"""Research code: the label-efficiency harness, the oracle experiments, the concentric-circles toy.

Not part of the installed package (``pyproject.toml`` installs ``pal``, ``server``, ``trainer`` and
``bench``): run from a source checkout, e.g. ``python -m research.label_efficiency_suite --help``.
Results are tagged with :func:`pal.core.replay.fingerprint` (what PAL asks and exports), not with hashes
of source files."""
