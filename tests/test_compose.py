"""Static checks of the docker-compose deployment: Docker cannot run on our machines, so the file is read.

What the code needs is computed from the code (environment reads found in its syntax tree, connection ids and
pools from config.py), never copied into the test, so a new variable or connection without deployment fails here.
The two .env templates are resolved the way compose resolves them (``${VAR:-default}``, ``${VAR:?error}``,
env_file under environment).
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from cognito_migration import config

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / "deploy" / "env.example"
ENV_LOCAL = ROOT / "deploy" / "env.local-stack"
POOLS_FILE = ROOT / "deploy" / "pools.json"
AIRFLOW_IMAGE = "apache/airflow:3.3.2-python3.11"
APP_DIR = "/opt/cognito-migration"  # where the Dockerfile puts the code compose does not mount

AIRFLOW_COMMANDS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-worker": "celery worker",
    "airflow-triggerer": "triggerer",
}
CORE_SERVICES = {"postgres", "redis", "airflow-init", "password-hook", *AIRFLOW_COMMANDS}
LOCAL_STACK_SERVICES = {"moto", "avnology-emulator", "mailpit", "local-stack-seed"}


# ---- compose semantics -------------------------------------------------------------------------------------------


class MissingVariable(LookupError):
    pass


def parse_env_file(path: Path) -> dict[str, str]:
    """A .env file as compose reads it: KEY=VALUE, single quotes literal, double quotes unescaped, # comments."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, raw = stripped.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"{path.name}:{number}: not KEY=VALUE"
        raw = raw.strip()
        if raw[:1] == "'":
            assert raw.endswith("'") and len(raw) > 1, f"{path.name}:{number}: unterminated single quote"
            value = raw[1:-1]
        elif raw[:1] == '"':
            assert raw.endswith('"') and len(raw) > 1, f"{path.name}:{number}: unterminated double quote"
            value = raw[1:-1].encode().decode("unicode_escape")
        else:
            value = re.split(r"\s+#", raw, maxsplit=1)[0]
        assert key not in values, f"{path.name}:{number}: {key} is set twice"
        values[key] = value
    return values


_VAR = re.compile(
    r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}|(?P<bare>[A-Za-z_]\w*))"
)


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable substitution over a parsed file; a ``${VAR:?msg}`` that is unset raises MissingVariable."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"] or "", match["arg"] or ""
        current = env.get(name)
        missing = current is None or (op.startswith(":") and current == "")
        if op.endswith("?") and missing:
            raise MissingVariable(f"{name}: {arg}")
        if op.endswith("-") and missing:
            return interpolate(arg, env)
        return current or ""

    return _VAR.sub(substitute, value)


def variables_of(value: Any) -> Iterable[tuple[str, str]]:
    """Every (name, operator) substituted anywhere in the raw file."""
    if isinstance(value, dict):
        for v in value.values():
            yield from variables_of(v)
    elif isinstance(value, list):
        for v in value:
            yield from variables_of(v)
    elif isinstance(value, str):
        for match in _VAR.finditer(value):
            if match.group(0) != "$$":
                yield (match["braced"] or match["bare"]), (match["op"] or "")


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict) and isinstance(loaded.get("services"), dict), "no services in docker-compose.yaml"
    return loaded


def resolved(raw: dict[str, Any], env_file: Path) -> dict[str, Any]:
    return interpolate(raw, parse_env_file(env_file))


@pytest.fixture(scope="module")
def local(raw: dict[str, Any]) -> dict[str, Any]:
    return resolved(raw, ENV_LOCAL)


def service_env(compose: dict[str, Any], name: str, env_file: Path) -> dict[str, str]:
    """What a container sees: its env_file (the template stands in for .env), overridden by ``environment``."""
    service = compose["services"][name]
    env: dict[str, str] = {}
    for entry in service.get("env_file") or []:
        path = entry["path"] if isinstance(entry, dict) else entry
        assert path == ".env", f"{name}: env_file {path!r}; the documented templates stand in for .env"
        env.update(parse_env_file(env_file))
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    env.update({k: "" if v is None else str(v) for k, v in environment.items()})
    return env


def command_words(service: dict[str, Any]) -> list[str]:
    words: list[str] = []
    for key in ("entrypoint", "command"):
        part = service.get(key)
        words += shlex.split(part) if isinstance(part, str) else [str(w) for w in part or []]
    return words


# ---- what the code reads -----------------------------------------------------------------------------------------


def _python_files(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))]


def _string_constants(files: Iterable[Path]) -> dict[str, str]:
    """Module-level ``NAME = "text"`` across the files, so ``os.environ.get(config.ENV_X)`` resolves."""
    constants: dict[str, str] = {}
    for path in files:
        for node in ast.parse(path.read_text()).body:
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        constants[target.id] = node.value.value
    return constants


def _is_environ(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def env_reads(*folders: str) -> tuple[set[str], list[str]]:
    """Environment variable names the code reads, and the reads whose name cannot be resolved statically."""
    files = _python_files(*folders)
    constants = _string_constants(files)

    def name_of(expr: ast.expr) -> str | None:
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return expr.value
        if isinstance(expr, ast.Name):
            return constants.get(expr.id)
        if isinstance(expr, ast.Attribute):
            return constants.get(expr.attr)
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            left, right = name_of(expr.left), name_of(expr.right)
            return left + right if left is not None and right is not None else None
        return None

    names: set[str] = set()
    unresolved: list[str] = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            key: ast.expr | None = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
                if (
                    node.func.attr in ("get", "pop", "setdefault") and _is_environ(node.func.value)
                ) or node.func.attr == "getenv":
                    key = node.args[0]
            elif isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load):
                key = node.slice
            if key is None:
                continue
            resolved_name = name_of(key)
            if resolved_name is None:
                unresolved.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            else:
                names.add(resolved_name)
    return names, unresolved


def connection_ids() -> set[str]:
    """Every connection id config.py names, plus any ``*conn_id="…"`` literal in the package and the DAGs."""
    ids = {
        value
        for name, value in vars(config).items()
        if name.endswith("_CONN_ID") and not name.startswith("ENV_") and isinstance(value, str)
    }
    for path in _python_files("plugins", "dags"):
        for node in ast.walk(ast.parse(path.read_text())):
            literal = isinstance(node, ast.keyword) and isinstance(node.value, ast.Constant)
            if (
                literal
                and (node.arg or "").endswith("conn_id")
                and isinstance(node.value.value, str)
                and node.value.value
            ):
                ids.add(node.value.value)
    return ids


def conn_env(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


# ---- the file and its services -----------------------------------------------------------------------------------


def test_compose_has_the_official_services_and_the_local_stack_profile(raw: dict[str, Any]) -> None:
    services = raw["services"]
    assert set(services) >= CORE_SERVICES, f"missing: {sorted(CORE_SERVICES - set(services))}"
    assert set(services) >= LOCAL_STACK_SERVICES, f"missing: {sorted(LOCAL_STACK_SERVICES - set(services))}"
    for name in CORE_SERVICES:
        assert not services[name].get("profiles"), f"{name} must start by default, without a profile"
    for name in LOCAL_STACK_SERVICES:
        assert services[name].get("profiles") == ["local-stack"], f"{name} belongs to the local-stack profile only"
    for name, command in AIRFLOW_COMMANDS.items():
        assert command_words(services[name]) == command.split(), f"{name} runs {command_words(services[name])}"
    assert services["airflow-worker"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    smtp_catcher = services["mailpit"]["image"]
    assert smtp_catcher.split(":")[0] in ("axllent/mailpit", "mailhog/mailhog"), smtp_catcher


def test_airflow_services_wait_for_init_and_mount_dags_and_plugins(local: dict[str, Any]) -> None:
    services = local["services"]
    for name in (*AIRFLOW_COMMANDS, "airflow-init"):
        mounts = {}
        for volume in services[name]["volumes"]:
            source, target = volume.split(":")[:2]
            mounts[target] = source
        for folder in ("dags", "plugins"):
            target = f"/opt/airflow/{folder}"
            assert target in mounts, f"{name} does not mount {folder}/"
            source = (ROOT / mounts[target]).resolve()
            assert source == ROOT / folder and source.is_dir(), f"{name} mounts {mounts[target]} on {target}"
        assert "/opt/airflow/logs" in mounts, f"{name} does not share ./logs (init must own it for the workers)"
        if name != "airflow-init":
            init = services[name]["depends_on"]["airflow-init"]
            assert init["condition"] == "service_completed_successfully", f"{name} may start before airflow-init"


def test_images_are_pinned_and_the_build_extends_the_official_image(raw: dict[str, Any]) -> None:
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", DOCKERFILE.read_text(), flags=re.M | re.I)
    assert froms, "Dockerfile has no FROM"
    assert froms[0][0] == AIRFLOW_IMAGE, f"the image must extend {AIRFLOW_IMAGE}, not {froms[0][0]}"
    stages = {alias for _, alias in froms if alias}
    for image, _ in froms:
        if image not in stages:
            name, _, tag = image.rpartition(":")
            assert name and re.search(r"\d", tag) and tag != "latest", f"unpinned base image {image}"
    for name, service in raw["services"].items():
        image = interpolate(service.get("image", ""), {})
        assert image, f"{name} has no image"
        tag = image.rpartition(":")[2] if ":" in image else ""
        assert re.search(r"\d", tag) and "latest" not in tag, f"{name}: image {image} is not pinned"
        if "build" in service:
            assert tag == AIRFLOW_IMAGE.split(":")[1], f"{name}: built image {image} is not tagged like its base"
            assert service["build"]["target"] in stages, f"{name}: build target {service['build']['target']}"
    airflow_pin = re.search(r"^apache-airflow==(\S+)", (ROOT / "requirements.txt").read_text(), flags=re.M)
    assert airflow_pin and AIRFLOW_IMAGE.split(":")[1].startswith(airflow_pin[1] + "-"), (
        "requirements.txt and FROM disagree"
    )


def test_the_image_installs_requirements_with_constraints_and_holds_the_unmounted_code(raw: dict[str, Any]) -> None:
    text = DOCKERFILE.read_text().replace("\\\n", " ")  # join continuation lines
    install = re.search(r"pip install[^\n]*", text)
    assert install, "the Dockerfile installs nothing"
    assert re.search(r"-r\s+\S*requirements\.txt", install[0]) and re.search(r"-c\s+\S*constraints\.txt", install[0])
    constraints = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^apache-airflow==3\.3\.2$", constraints, flags=re.M), "constraints.txt must pin apache-airflow"
    copied = {
        Path(src.rstrip("/")).name
        for src in re.findall(r"^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+$", text, re.M)
        for src in src.split()
    }

    # Every module or script a service runs must be in the image (copied) or mounted.
    for name, service in raw["services"].items():
        words = command_words(service)
        for script in [w for w in words if w.startswith(APP_DIR + "/") and w.endswith(".sh")]:
            words += shlex.split((ROOT / script.removeprefix(APP_DIR + "/")).read_text(), comments=True)
        for i, word in enumerate(words):
            module = words[i + 1] if word == "-m" and i + 1 < len(words) else None
            if module and module.split(".")[0] in {"emulators", "password_hook", "deploy"}:
                package = module.split(".")[0]
                assert package in copied, f"{name} runs {module}, but the Dockerfile does not copy {package}/"
                assert (ROOT / module.replace(".", "/")).exists() or (
                    ROOT / (module.replace(".", "/") + ".py")
                ).exists()
            if word.startswith(APP_DIR + "/"):
                local_path = ROOT / word.removeprefix(APP_DIR + "/")
                assert local_path.is_file(), f"{name} runs {word}, which is not in the repository"
                assert local_path.relative_to(ROOT).parts[0] in copied, f"{word} is not copied into the image"
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") if "*" in ignore else 0] == "*", ".dockerignore must exclude by default"
    for folder in copied - {"requirements.txt", "constraints.txt"}:
        assert f"!{folder}/" in ignore, f".dockerignore leaves {folder}/ out of the build context"
    assert "**/.env" in ignore, ".dockerignore must keep .env (secrets) out of the build context"


# ---- environment and connections ---------------------------------------------------------------------------------


def test_every_variable_the_pipeline_reads_is_set_on_every_airflow_service(local: dict[str, Any]) -> None:
    read, unresolved = env_reads("plugins", "dags")
    assert not unresolved, f"environment reads this test cannot resolve (use a named constant): {unresolved}"
    assert {config.ENV_LEDGER_URL, config.ENV_STORAGE, config.ENV_STORAGE_CONN_ID} <= read  # the scan works
    for name in (*AIRFLOW_COMMANDS, "airflow-init"):
        env = service_env(local, name, ENV_LOCAL)
        assert read <= set(env), f"{name} does not set {sorted(read - set(env))}"
        ours = {k for k in env if k.startswith("COGNITO_")}
        assert ours <= read, f"{name} sets {sorted(ours - read)}, which no code reads (a typo?)"


def test_every_connection_the_code_uses_is_defined_in_both_env_templates() -> None:
    from airflow.models.connection import Connection

    from cognito_migration.avnology import ConnectionSettings

    ids = connection_ids()
    assert {config.COGNITO_CONN_ID, config.AVNOLOGY_PRODUCTION_CONN_ID, config.SMTP_CONN_ID} <= ids
    for template in (ENV_EXAMPLE, ENV_LOCAL):
        env = parse_env_file(template)
        storage_conn = env.get(config.ENV_STORAGE_CONN_ID)
        for conn_id in ids | ({storage_conn} if storage_conn else set()):
            assert conn_env(conn_id) in env, f"{template.name} does not define {conn_env(conn_id)}"
            conn = Connection.from_json(env[conn_env(conn_id)], conn_id=conn_id)
            assert conn.conn_type, f"{template.name}: {conn_id} has no conn_type"
            if conn.conn_type == "avnology":
                ConnectionSettings.from_connection(conn_id, conn.host, conn.extra_dejson)
                if template == ENV_LOCAL:
                    assert conn.password, f"{template.name}: {conn_id} has no API key"


def test_local_stack_connections_reach_the_local_stack_services(local: dict[str, Any]) -> None:
    from airflow.models.connection import Connection

    env = parse_env_file(ENV_LOCAL)
    services = local["services"]

    def listening_port(service: str) -> int:
        words = command_words(services[service])
        if "--port" in words:
            return int(words[words.index("--port") + 1])
        return int(services[service]["expose"][0])

    targets: list[tuple[str, str]] = []
    for key, value in env.items():
        if key.startswith("AIRFLOW_CONN_"):
            conn = Connection.from_json(value, conn_id=key.removeprefix("AIRFLOW_CONN_").lower())
            if conn.conn_type == "smtp":
                targets.append((key, f"smtp://{conn.host}:{conn.port}"))
            elif conn.conn_type == "avnology":
                targets.append((key, conn.host))
            for service_config in conn.extra_dejson.get("service_config", {}).values():
                targets.append((key, service_config["endpoint_url"]))
    targets.append(("PASSWORD_HOOK_COGNITO_ENDPOINT_URL", env["PASSWORD_HOOK_COGNITO_ENDPOINT_URL"]))
    for key, url in targets:
        parts = urlsplit(url)
        assert parts.hostname in LOCAL_STACK_SERVICES, f"{key} points at {parts.hostname}, not a local-stack service"
        assert parts.port == listening_port(parts.hostname), (
            f"{key}: {parts.hostname} listens elsewhere than {parts.port}"
        )

    keys = (
        json.loads(env["AIRFLOW_CONN_AVNOLOGY_STAGING"])["password"],
        json.loads(env["AIRFLOW_CONN_AVNOLOGY_PRODUCTION"])["password"],
    )
    assert keys == (env["AVNOLOGY_STAGING_KEY"], env["AVNOLOGY_PRODUCTION_KEY"]), (
        "emulator keys differ from the connections"
    )


def test_the_emulator_and_hook_services_get_every_variable_their_code_reads(local: dict[str, Any]) -> None:
    emulator_reads, unresolved = env_reads("emulators/avnology")
    assert not unresolved and emulator_reads, unresolved
    emulator_env = service_env(local, "avnology-emulator", ENV_LOCAL)
    assert emulator_reads <= set(emulator_env), f"emulator lacks {sorted(emulator_reads - set(emulator_env))}"

    from password_hook.settings import ENV_PREFIX, HookSettings

    hook_env = service_env(local, "password-hook", ENV_LOCAL)
    known = {ENV_PREFIX + s for s in _string_literals(ROOT / "password_hook" / "settings.py") if s.isupper()}
    for template in (ENV_EXAMPLE, ENV_LOCAL):
        ours = {k for k in parse_env_file(template) if k.startswith(ENV_PREFIX)} - {"PASSWORD_HOOK_ENV_FILE"}
        assert ours <= known, f"{template.name} sets {sorted(ours - known)}, which the hook does not read"
    # The seeder adds the pool and client ids at run time (deploy/local_stack_seed.py); with them the service's
    # environment must build valid settings, pointed at moto and at the ledger on the compose PostgreSQL.
    seeded = {"PASSWORD_HOOK_USER_POOL_ID": "us-east-1_abc123", "PASSWORD_HOOK_CLIENT_ID": "client123"}
    settings = HookSettings.from_env({**hook_env, **seeded})
    assert settings.cognito_endpoint_url == "http://moto:5000"
    assert urlsplit(settings.ledger_url or "").hostname == "postgres"
    assert hook_env["PASSWORD_HOOK_ENV_FILE"] in command_words(local["services"]["local-stack-seed"])


def _string_literals(path: Path) -> set[str]:
    return {
        n.value
        for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def test_required_variables_are_documented_and_the_local_template_resolves(raw: dict[str, Any]) -> None:
    required = {name for name, op in variables_of(raw) if op.endswith("?")}
    assert {"POSTGRES_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_FERNET_KEY"} <= required
    example, local_env = parse_env_file(ENV_EXAMPLE), parse_env_file(ENV_LOCAL)
    assert required <= set(example), f"env.example does not document {sorted(required - set(example))}"
    assert all(local_env.get(name) for name in required), "env.local-stack leaves a required value empty"
    resolved(raw, ENV_LOCAL)  # raises MissingVariable on any gap
    with pytest.raises(MissingVariable):  # the example's empty secrets stop compose until they are filled in
        resolved(raw, ENV_EXAMPLE)
    from cryptography.fernet import Fernet

    Fernet(local_env["AIRFLOW_FERNET_KEY"].encode())


def test_every_postgresql_url_names_the_psycopg2_driver(local: dict[str, Any]) -> None:
    """SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which the image does not install."""
    for name in local["services"]:
        for key, value in service_env(local, name, ENV_LOCAL).items():
            for url in re.findall(r"postgresql[\w+]*://", value):
                assert url == "postgresql+psycopg2://", f"{name}: {key} uses {url} (write postgresql+psycopg2://)"


def test_ledger_on_compose_postgres_and_storage_moved_by_one_variable(
    raw: dict[str, Any], local: dict[str, Any]
) -> None:
    workers = [name for name in AIRFLOW_COMMANDS]
    for name in workers:
        env = service_env(local, name, ENV_LOCAL)
        ledger = urlsplit(env[config.ENV_LEDGER_URL])
        assert ledger.scheme.startswith("postgresql") and ledger.hostname == "postgres", env[config.ENV_LEDGER_URL]
        assert ledger.path.strip("/") != "airflow", "the ledger must not share Airflow's metadata database"
        storage = env[config.ENV_STORAGE]
        mounted = [v.split(":")[1] for v in local["services"][name]["volumes"] if not v.startswith(("/", ".", "$"))]
        assert any(storage.startswith(target + "/") for target in mounted), (
            f"{name}: {storage} is not on a shared volume"
        )
    moved = interpolate(
        raw,
        {
            **parse_env_file(ENV_LOCAL),
            config.ENV_STORAGE: "s3://bucket/migration",
            config.ENV_STORAGE_CONN_ID: "aws_storage",
        },
    )
    for name in workers:
        env = service_env(moved, name, ENV_LOCAL)
        assert env[config.ENV_STORAGE] == "s3://bucket/migration" and env[config.ENV_STORAGE_CONN_ID] == "aws_storage"


# ---- pools -----------------------------------------------------------------------------------------------------


def test_init_imports_every_pool_the_code_names(local: dict[str, Any]) -> None:
    init = local["services"]["airflow-init"]
    script_path = next(w for w in command_words(init) if w.endswith(".sh"))
    mounts = dict(v.split(":")[:2][::-1] for v in init["volumes"])
    script = ROOT / "deploy" / Path(script_path).name
    assert mounts.get(f"{APP_DIR}/deploy") == "./deploy", "airflow-init must see the working tree's deploy/"
    commands = [line.strip() for line in script.read_text().splitlines() if not line.strip().startswith("#")]
    imports = [c for c in commands if c.startswith("airflow pools import")]
    assert imports, f"{script.name} does not import pools"
    assert imports[0].split()[-1].strip('"').endswith("/deploy/pools.json")

    pools = json.loads(POOLS_FILE.read_text())
    named = {value for name, value in vars(config).items() if name.startswith("POOL_") and isinstance(value, str)}
    assert named and named <= set(pools), f"pools.json lacks {sorted(named - set(pools))}"
    assert all(int(p["slots"]) >= 1 for p in pools.values())


def test_avnology_write_slots_times_rate_fit_the_emulator_limit() -> None:
    """In the local stack, every avnology_writes slot at the connection's rate stays under the tenant's limit."""
    import dataclasses

    from emulators.avnology.settings import EmulatorSettings

    limit = next(f.default for f in dataclasses.fields(EmulatorSettings) if f.name == "rate_limit_rps")
    slots = json.loads(POOLS_FILE.read_text())[config.POOL_AVNOLOGY_WRITES]["slots"]
    env = parse_env_file(ENV_LOCAL)
    for conn_id in (config.AVNOLOGY_STAGING_CONN_ID, config.AVNOLOGY_PRODUCTION_CONN_ID):
        rate = json.loads(env[conn_env(conn_id)])["extra"]["rate_limit_rps"]
        assert slots * rate <= limit, f"{conn_id}: {slots} slots × {rate} rps exceeds the emulator's {limit} rps"
