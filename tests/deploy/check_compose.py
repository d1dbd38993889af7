"""Validates deploy/compose.yaml as an operator would, without a Docker engine.

1. Interpolation as compose does it (${VAR}, ${VAR:-default}, ${VAR:?message}): with every variable of
   deploy/env.example set, the file must interpolate; with none set, it must refuse, naming each required secret.
2. The interpolated file must parse under the Compose Specification (PyPI compose-spec, a strict, validating parser).
3. Deployment rules: every long-running service restarts unless stopped and has a healthcheck; the servers' stop
   grace period is above their shutdown timeout; PostgreSQL keeps its data in a named volume and is probed over TCP;
   no secret has a fallback value.
"""

import re
import sys
from pathlib import Path

import yaml
from compose_spec import PyOptions

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
ENV_EXAMPLE = ROOT / "deploy" / "env.example"
SECRETS = {"POSTGRES_PASSWORD", "POINTS_KEY_HASH_SECRET", "POINTS_BOOTSTRAP_ADMIN_KEY", "POINTS_GATEWAY_TOKEN"}
PATTERN = re.compile(r"\$\{([A-Z0-9_]+)(?:(:\?|:-)([^}]*))?\}")

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL {message}")


def interpolate(text, env):
    """Returns (text, errors) like compose's interpolation."""
    errors = []

    def substitute(match):
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        value = env.get(name, "")
        if operator == ":?" and not value:
            errors.append(f"required variable {name} is missing a value: {argument}")
            return ""
        if operator == ":-" and not value:
            return argument
        return value

    return PATTERN.sub(substitute, text), errors


def seconds(duration):
    match = re.fullmatch(r"(\d+)(ms|s|m)", str(duration))
    if not match:
        raise ValueError(f"cannot read the duration {duration!r}")
    number, unit = int(match.group(1)), match.group(2)
    return number / 1000 if unit == "ms" else number * (60 if unit == "m" else 1)


def main():
    text = COMPOSE.read_text()
    example_names = [
        line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines() if re.match(r"^[A-Z0-9_]+=", line)
    ]
    for name, operator, _ in PATTERN.findall(text):
        if name in SECRETS and operator != ":?":
            fail(f"secret {name} must be required (${{{name}:?message}}), not defaulted")
        if name not in example_names:
            fail(f"{name} is used by compose.yaml but missing from deploy/env.example")

    _, errors = interpolate(text, {})
    missing = {re.search(r"variable (\S+)", error).group(1) for error in errors}
    if missing != SECRETS:
        fail(f"with no environment compose must refuse for exactly {sorted(SECRETS)}, refused for {sorted(missing)}")
    else:
        print(f"ok   without secrets compose refuses to start: {sorted(missing)}")

    filled = {name: "x" * 48 for name in example_names}
    filled["POINTS_KEY_HASH_SECRET_PREVIOUS"] = ""
    rendered, errors = interpolate(text, filled)
    if errors:
        fail(f"interpolation with every variable set failed: {errors}")
    # YAML merge keys (<<: *points-server) are applied as compose applies them.
    compose = PyOptions(apply_merge=True).from_yaml(rendered)
    compose.validate()
    print(f"ok   compose-spec: services {compose.service_names()}")

    document = yaml.safe_load(rendered)
    services = document["services"]
    for name, service in services.items():
        if service.get("restart") != "unless-stopped":
            fail(f"service {name}: restart must be unless-stopped")
        if "healthcheck" not in service:
            fail(f"service {name}: no healthcheck")
    servers = [name for name, service in services.items() if service.get("command") == ["serve"]
               and "entrypoint" not in service]
    if len(servers) < 2:
        fail(f"expected at least two server replicas, found {servers}")
    for name in servers:
        service = services[name]
        timeout_ms = int(service["environment"].get("POINTS_SHUTDOWN_TIMEOUT_MS", "20000"))
        grace = seconds(service.get("stop_grace_period", "10s"))
        if grace <= timeout_ms / 1000:
            fail(f"service {name}: stop_grace_period {grace}s is not above the shutdown timeout {timeout_ms} ms")
        if service["healthcheck"]["test"] != ["CMD", "points", "healthcheck"]:
            fail(f"service {name}: healthcheck must be points healthcheck")
        if not service["environment"].get("POINTS_METRICS_ADDR"):
            fail(f"service {name}: POINTS_METRICS_ADDR unset while the REST gateway runs elsewhere")
    gateway = services["gateway"]
    if gateway["healthcheck"]["test"] != ["CMD", "points-gateway", "healthcheck"]:
        fail("gateway: healthcheck must be points-gateway healthcheck")
    backends = gateway["environment"]["POINTS_GATEWAY_GRPC_URL"].split(",")
    if len(backends) != len(servers):
        fail(f"gateway: POINTS_GATEWAY_GRPC_URL lists {len(backends)} backends for {len(servers)} servers")
    postgres = services["postgres"]
    probe = postgres["healthcheck"]["test"]
    if "-h" not in probe:
        fail("postgres: pg_isready must probe over TCP (-h 127.0.0.1)")
    volumes = document.get("volumes") or {}
    data_mounts = [mount for mount in postgres.get("volumes", []) if mount.endswith(":/var/lib/postgresql/data")]
    if not data_mounts or data_mounts[0].split(":")[0] not in volumes:
        fail("postgres: the data directory must be a named volume")
    images = {service.get("image") for service in services.values()
              if service.get("build", {}).get("dockerfile") == "Dockerfile"}
    if len(images) != 1:
        fail(f"every service built from the project's Dockerfile must share one image, found {sorted(images)}")
    pooled = [name for name in servers if ":6432/" in services[name]["environment"]["DATABASE_URL"]]
    for name in pooled:
        environment = services[name]["environment"]
        if environment.get("POINTS_DATABASE_POOL_MODE") != "transaction":
            fail(f"service {name}: pools through pgbouncer without POINTS_DATABASE_POOL_MODE=transaction")
        if "@postgres:5432/" not in environment.get("POINTS_LISTEN_DATABASE_URL", ""):
            fail(f"service {name}: POINTS_LISTEN_DATABASE_URL must reach PostgreSQL directly")
    if "pgbouncer" in services:
        ini = (ROOT / "deploy" / "pgbouncer" / "pgbouncer.ini").read_text()
        if not re.search(r"^pool_mode = transaction$", ini, re.M):
            fail("deploy/pgbouncer/pgbouncer.ini: pool_mode must be transaction")
        if len(pooled) != len(servers):
            fail(f"with pgbouncer deployed every server must pool through it, only {pooled} do")
    if failures:
        print(f"{len(failures)} compose check(s) failed")
        return 1
    print("ok   deployment rules hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
