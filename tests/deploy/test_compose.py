"""docker-compose.yml, Dockerfile and .env.example, checked without a Docker engine: the compose
file against the Compose Specification's JSON schema (vendored, see README.md here), and every
command, environment variable and path they name against the project itself."""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from server.config import Settings

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SCHEMA_SHA256 = "56bab44c85c0ce8affb74474950293f37d510673283a243bcd7eeadb900fa35c"

# Variables that belong to other software, with who reads them.
FOREIGN_VARS = {
    "POSTGRES_USER": "the official postgres image",
    "POSTGRES_PASSWORD": "the official postgres image",
    "POSTGRES_DB": "the official postgres image",
    "PROMETHEUS_MULTIPROC_DIR": "prometheus-client (multiprocess mode)",
    "COMPOSE_PROFILES": "docker compose itself",
    "PATH": "the shell", "PYTHONPATH": "Python", "PYTHONUNBUFFERED": "Python", "PYTHONDONTWRITEBYTECODE": "Python",
    "PIP_NO_CACHE_DIR": "pip", "PIP_DISABLE_PIP_VERSION_CHECK": "pip",
}

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def env_example() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=VALUE: {line!r}"
            out[key.strip()] = value.strip()
    return out


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution (${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, $$)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1) or m.group(4), m.group(2), m.group(3) or ""
        current = env.get(name)
        if op == ":-":
            return current if current else arg
        if op == "-":
            return current if current is not None else arg
        if op in (":?", "?"):
            if not current:
                raise AssertionError(f"{name} is required: {arg}")
            return current
        return current or ""

    return _VAR.sub(sub, value)


def compose_raw() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def compose() -> dict[str, Any]:
    data: dict[str, Any] = interpolate(compose_raw(), env_example())
    return data


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def interpolated_names() -> set[str]:
    """Variables the compose file substitutes (from its values; comments do not count)."""
    return {m.group(1) or m.group(4) for text in _strings(compose_raw()) for m in _VAR.finditer(text)
            if m.group(0) != "$$"}


def settings_env_names() -> set[str]:
    return {f"PAL_{name.upper()}" for name in Settings.model_fields}


def env_reads_in_source() -> set[str]:
    """PAL_* variables that project code reads directly (os.environ / os.getenv)."""
    names: set[str] = set()
    pattern = re.compile(r"""(?:environ(?:\.get)?\s*[\[(]|getenv\s*\()\s*["'](PAL_[A-Z0-9_]+)["']""")
    for folder in ("pal", "server", "trainer"):
        for path in (ROOT / folder).rglob("*.py"):
            names.update(pattern.findall(path.read_text()))
    return names


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


# --------------------------------------------------------------------------- schema


def test_vendored_schema_is_the_recorded_file() -> None:
    assert hashlib.sha256((HERE / "compose-spec.json").read_bytes()).hexdigest() == SCHEMA_SHA256


@pytest.mark.parametrize("interpolated", [False, True])
def test_compose_file_matches_the_compose_specification(interpolated: bool) -> None:
    schema = json.loads((HERE / "compose-spec.json").read_text())
    validator = jsonschema_rs.validator_for(schema)
    document = compose() if interpolated else compose_raw()
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []


def test_schema_validation_rejects_a_broken_compose_file() -> None:
    """The check above can fail: a misspelt key is an error."""
    schema = json.loads((HERE / "compose-spec.json").read_text())
    broken = compose_raw()
    broken["services"]["server"]["healthchek"] = broken["services"]["server"].pop("healthcheck")
    assert not jsonschema_rs.validator_for(schema).is_valid(broken)


# --------------------------------------------------------------------------- services


def test_services_start_in_order_db_migrate_server_trainer() -> None:
    services = compose()["services"]
    assert set(services) == {"db", "migrate", "server", "trainer", "trainer-cpu"}
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["server"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("trainer", "trainer-cpu"):
        assert services[name]["depends_on"]["server"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"


def test_database_is_a_pinned_official_postgres_with_a_volume_and_healthcheck() -> None:
    data = compose()
    db = data["services"]["db"]
    assert re.fullmatch(r"postgres:\d+\.\d+[-\w.]*", db["image"]), db["image"]
    volume = db["volumes"][0].split(":")[0]
    assert volume in data["volumes"]  # a named volume, not a bind mount
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])


def test_server_health_check_calls_the_healthz_route() -> None:
    from server.main import app

    server = compose()["services"]["server"]
    assert "/healthz" in " ".join(server["healthcheck"]["test"])
    assert "/healthz" in app.openapi()["paths"]


def test_gpu_trainer_reserves_gpus_and_cpu_trainer_does_not() -> None:
    services = compose()["services"]
    devices = services["trainer"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"] and devices[0]["driver"] == "nvidia"
    assert "deploy" not in services["trainer-cpu"]
    assert services["trainer"]["profiles"] == ["gpu"] and services["trainer-cpu"]["profiles"] == ["cpu"]
    assert services["trainer"]["command"][0] == "torchrun"


def test_server_runs_several_workers_with_multiprocess_metrics() -> None:
    server = compose()["services"]["server"]
    command = server["command"]
    assert int(command[command.index("--workers") + 1]) > 1
    directory = server["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert directory in server["tmpfs"]  # emptied on every container start, as prometheus-client requires


# --------------------------------------------------------------------------- commands


def _check_pal_command(argv: list[str]) -> None:
    """Parse as ``pal.cli.main`` would; SystemExit on an unknown command or flag."""
    from pal.cli import FORWARDED, build_parser

    if argv[0] not in FORWARDED:
        build_parser().parse_args(argv)
    elif argv[0] == "train":
        from trainer.loop import build_parser as train_parser

        train_parser().parse_args(argv[1:])
    elif argv[0] == "export":
        from server.export import build_parser as export_parser

        export_parser().parse_args(argv[1:])
    else:
        raise AssertionError(f"no flag check for pal {argv[0]}")


def _check_command(argv: list[str]) -> None:
    if argv[0] == "pal":
        _check_pal_command(argv[1:])
    elif argv[0] == "torchrun":
        from torch.distributed.run import get_args_parser

        args = get_args_parser().parse_args(argv[1:])
        assert args.no_python, "torchrun runs the pal executable, not a script"
        _check_command([args.training_script, *args.training_script_args])
    else:
        raise AssertionError(f"unexpected program {argv[0]!r}")


@pytest.mark.parametrize("service", ["migrate", "server", "trainer", "trainer-cpu"])
def test_service_command_is_a_real_pal_command(service: str) -> None:
    command = compose()["services"][service]["command"]
    _check_command(command if isinstance(command, list) else shlex.split(command))


def test_command_check_rejects_an_unknown_flag() -> None:
    with pytest.raises((SystemExit, argparse.ArgumentError)):
        _check_command(["pal", "serve", "--no-such-flag"])


def test_dockerfile_default_command_is_a_real_pal_command() -> None:
    cmd = [rest for keyword, rest in dockerfile_instructions() if keyword == "CMD"][-1]
    _check_command(json.loads(cmd))


# --------------------------------------------------------------------------- environment


def test_every_environment_variable_exists_in_the_project() -> None:
    known = settings_env_names() | env_reads_in_source() | set(FOREIGN_VARS)
    named: set[str] = set()
    for service in compose()["services"].values():
        env = service.get("environment") or {}
        named |= set(env) if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}
    for keyword, rest in dockerfile_instructions():
        if keyword == "ENV":
            named |= {pair.split("=", 1)[0] for pair in shlex.split(rest)}
    assert named - known == set()
    assert "PAL_TOKEN" in env_reads_in_source()  # the trainer's token, read by trainer/config.py


def test_env_example_documents_every_interpolated_variable() -> None:
    example = env_example()
    assert interpolated_names() - set(example) == set()
    unused = set(example) - interpolated_names() - {"COMPOSE_PROFILES"}
    assert unused == set()


def test_env_example_names_only_real_settings() -> None:
    pal_names = {k for k in env_example() if k.startswith("PAL_")}
    compose_only = {"PAL_IMAGE", "PAL_PORT", "PAL_WORKERS", "PAL_TRAINER_PROJECT", "PAL_TRAINER_TOKEN",
                    "PAL_TRAINER_NPROC", "PAL_TRAINER_GPUS"}  # read by docker-compose.yml, not by PAL
    assert pal_names - compose_only - settings_env_names() == set()
    assert compose_only <= interpolated_names()


# --------------------------------------------------------------------------- Dockerfile


def _copy_sources() -> list[str]:
    sources = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY" and "--from=" not in rest:
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            sources += parts[:-1]
    return sources


def test_every_path_the_dockerfile_copies_exists() -> None:
    sources = _copy_sources()
    # what the wheel is built from (setup.py maps migrations/, webui/ and demo/ into the packages)
    assert {"pyproject.toml", "setup.py", "pal", "server", "trainer", "migrations", "webui", "demo"} <= set(sources)
    assert [s for s in sources if not (ROOT / s).exists()] == []


def test_dockerfile_runtime_installs_the_wheel_and_copies_no_source() -> None:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _r) in enumerate(instructions) if keyword == "FROM")
    runtime = instructions[last_from:]
    assert [rest for keyword, rest in runtime if keyword == "COPY" and "--from=" not in rest] == []
    assert any(keyword == "RUN" and "pip install --no-deps" in rest and ".whl" in rest for keyword, rest in runtime)
    assert not any(keyword == "ENV" and "PYTHONPATH" in rest for keyword, rest in runtime)


def test_dockerignore_keeps_every_copied_path() -> None:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#") and not p.startswith("!")]
    ignored = [s for s in _copy_sources() for p in patterns if fnmatch.fnmatch(s, p.rstrip("/"))]
    assert ignored == []


def test_dockerfile_is_multistage_pinned_and_runs_as_non_root() -> None:
    instructions = dockerfile_instructions()
    args = dict(rest.split("=", 1) for keyword, rest in instructions if keyword == "ARG" and "=" in rest)
    stages = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(stages) >= 2
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base), base
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    last_from = max(i for i, (keyword, _r) in enumerate(instructions) if keyword == "FROM")
    last_user = max(i for i, (keyword, _r) in enumerate(instructions) if keyword == "USER")
    assert last_user > last_from  # the final stage drops root
