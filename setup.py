"""Packaging glue that pyproject.toml cannot express: the checkout keeps ``migrations/``, ``webui/`` and
``demo/`` at the top level (the project's layout), and a built wheel carries them inside the installed
packages, so ``pal migrate``, ``pal serve`` and ``pal demo`` work after ``pip install .`` with no checkout.
``pal/assets.py`` finds them in either place. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

# installed package -> folder of the checkout it is built from
ASSETS = {
    "server.migrations": "migrations",
    "server.webui": "webui",
    "pal.demo_data": "demo",
}

# bench: the product benchmarks `pal bench` runs. research/ (label efficiency, oracle experiments) is left
# out on purpose: it runs from a source checkout (python -m research.NAME).
setup(
    packages=find_packages(include=["pal", "pal.*", "server", "server.*", "trainer", "trainer.*", "bench",
                                    "bench.*"]) + list(ASSETS),
    package_dir=ASSETS,
)
