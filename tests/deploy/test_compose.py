"""docker-compose.yml without a Docker engine: `docker compose config` (the CLI `make compose` builds) must accept it,
and what it renders must keep ports on loopback, images pinned, credentials in .env, the job's variables the ones
telemetry/settings.py reads, the Flink version the pinned one, and the job command one Flink's parser hands to it."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any, Iterator

import pyflink
import pytest
import yaml

from telemetry import settings as cfg
from telemetry.settings import REPO_ROOT
from dev.stack.flink import REPORTER_EXCLUDES

Json = dict[str, Any]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / "compose.env.example"
JOB_DOCKERFILE = "k8s/flink-operator/Dockerfile"
DEV_DOCKERFILE = "dev/Dockerfile"
PROMETHEUS_CONFIG = REPO_ROOT / "monitoring" / "prometheus" / "prometheus.compose.yml"
GRAFANA_PROVISIONING = REPO_ROOT / "monitoring" / "grafana" / "provisioning"
REQUIRED_SERVICES = {"kafka", "clickhouse", "minio", "prometheus", "grafana", "jobmanager", "taskmanager", "heartbeat",
                     "simulator"}
# Read by the Flink image's entrypoint (merged into conf/config.yaml), not by the job's settings.
FLINK_IMAGE_VARIABLES = {"FLINK_PROPERTIES"}
SECRET_NAME = re.compile(r"password|secret|access[._-]key|pseudonym[._-]key|(?<![a-z])token(?![a-z])", re.IGNORECASE)
FROM_ENV_FILE = re.compile(r"^\$\{([A-Z][A-Z0-9_]*):\?[^}]+\}$")  # required, no default: the value is in .env only
FULL_VERSION = re.compile(r"\d+\.\d+\.\d+|\d{4}-\d{2}-\d{2}")  # 4.1.1, v3.5.0, RELEASE.2025-09-07T16-13-09Z
# PostgreSQL numbers its releases MAJOR.MINOR: 15.13 is a full version (15 alone would float)
POSTGRES_VERSION = re.compile(r"\d+\.\d+(-[a-z]+)?")


def compose_bin() -> str:
    path = os.environ.get("COMPOSE_BIN")
    if not path:
        pytest.fail("COMPOSE_BIN is not set: run `make compose` and the tests through `make test` (it exports the path)")
    if not os.access(path, os.X_OK):
        pytest.fail(f"COMPOSE_BIN={path} is not an executable: run `make compose` to build it")
    return path


def required_variables(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):\?", text))


def run_config(compose_file: Path, env_file: Path, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """`docker compose config` with only the env file for variables: the caller's environment (a developer's
    exported CLICKHOUSE_PASSWORD, ~/.docker) must not decide the outcome."""
    cmd = [compose_bin(), "--project-directory", str(REPO_ROOT), "-f", str(compose_file), "--env-file", str(env_file),
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, env={"PATH": os.environ["PATH"], "HOME": str(home)},
                          timeout=60)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compose")


@pytest.fixture(scope="module")
def env_file(workdir: Path) -> Path:
    """A value for every required variable, unique so a test can tell where each one went."""
    path = workdir / "test.env"
    path.write_text("".join(f"{name}=test-{name.lower()}-{secrets.token_hex(6)}\n"
                            for name in sorted(required_variables(COMPOSE_FILE.read_text()))))
    return path


@pytest.fixture(scope="module")
def rendered(workdir: Path, env_file: Path) -> Json:
    result = run_config(COMPOSE_FILE, env_file, "--profile", "simulator", "--profile", "reports", "config", "--format",
                        "json", home=workdir)
    assert result.returncode == 0, f"docker compose config refused docker-compose.yml:\n{result.stderr}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def raw() -> Json:
    """The file as written (anchors and merge keys resolved), before interpolation."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def job_image_services(doc: Json) -> dict[str, Json]:
    return {name: s for name, s in doc["services"].items() if (s.get("build") or {}).get("dockerfile") == JOB_DOCKERFILE}


def pinned(name: str) -> str:
    for requirement in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        if requirement.startswith(f"{name}=="):
            return requirement.split("==")[1]
    raise AssertionError(f"{name} is not pinned in pyproject.toml")


# --- the file is valid, and a broken one is not ------------------------------------------------------------------


def test_compose_config_accepts_the_file_and_the_simulator_is_opt_in(rendered: Json, workdir: Path, env_file: Path):
    assert REQUIRED_SERVICES <= set(rendered["services"]), REQUIRED_SERVICES - set(rendered["services"])
    assert rendered["services"]["simulator"]["profiles"] == ["simulator"]
    default = run_config(COMPOSE_FILE, env_file, "config", "--services", home=workdir)
    assert default.returncode == 0, default.stderr
    services = set(default.stdout.split())
    assert REQUIRED_SERVICES - {"simulator"} <= services and "simulator" not in services, services
    assert rendered["services"]["reports"]["profiles"] == ["reports"] and "reports" not in services


def test_a_broken_file_or_a_missing_credential_makes_config_fail(workdir: Path, env_file: Path):
    text = COMPOSE_FILE.read_text()
    copy = workdir / "copy.yml"
    copy.write_text(text)
    assert run_config(copy, env_file, "config", "--quiet", home=workdir).returncode == 0  # the copy itself is fine

    broken = workdir / "broken.yml"
    broken.write_text(text.replace("    ports:\n", "    portz:\n", 1))
    result = run_config(broken, env_file, "config", "--quiet", home=workdir)
    assert result.returncode != 0 and "portz" in result.stderr, result.stderr

    partial = workdir / "partial.env"
    partial.write_text("".join(line + "\n" for line in env_file.read_text().splitlines()
                               if not line.startswith("CLICKHOUSE_PASSWORD=")))
    result = run_config(COMPOSE_FILE, partial, "config", "--quiet", home=workdir)
    assert result.returncode != 0 and "set CLICKHOUSE_PASSWORD in .env" in result.stderr, result.stderr


# --- exposure, pinning, credentials ------------------------------------------------------------------------------


def test_every_published_port_binds_loopback(rendered: Json, raw: Json):
    published = {(name, int(p["published"])) for name, s in rendered["services"].items() for p in s.get("ports", [])}
    assert {("kafka", 9092), ("clickhouse", 8123), ("grafana", 3000), ("jobmanager", 8081)} <= published
    for name, service in rendered["services"].items():
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name}: {port} is published beyond 127.0.0.1"
    for name, service in raw["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: write 127.0.0.1:HOST:CONTAINER"
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Docker compose"):]
    rows = {m[1]: m[2] for m in re.finditer(r"^\| (\S+) \| ([^|]+) \|", section, re.MULTILINE)}
    for name, port in published:
        assert re.search(rf"\b{port}\b", rows.get(name, "")), f"README's docker compose table lacks {name} {port}"


def test_every_image_and_the_grafana_plugin_are_pinned(rendered: Json):
    for name, service in rendered["services"].items():
        reference = service["image"].split("@")[0]
        repository, _, tag = reference.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {service['image']} has no tag"
        full = POSTGRES_VERSION.fullmatch(tag) if repository == "postgres" else FULL_VERSION.search(tag)
        assert tag != "latest" and full, f"{name}: {service['image']} is not a full version"
    plugins = rendered["services"]["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    for plugin in plugins.split(","):
        assert re.fullmatch(r"[a-z0-9-]+ \d+\.\d+\.\d+", plugin.strip()), f"GF_INSTALL_PLUGINS: pin {plugin!r}"


def secret_entries(raw: Json) -> Iterator[tuple[str, str, str]]:
    """(service, name, value as written) of every secret-looking variable and Flink property."""
    for service_name, service in raw["services"].items():
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), f"{service_name}: write environment as a mapping"
        for name, value in environment.items():
            if SECRET_NAME.search(name):
                yield service_name, name, str(value)
        for line in str(environment.get("FLINK_PROPERTIES", "")).splitlines():
            key, _, value = line.partition(":")
            if SECRET_NAME.search(key):
                yield service_name, key.strip(), value.strip()


def test_credentials_come_only_from_the_env_file(raw: Json, rendered: Json, env_file: Path):
    entries = list(secret_entries(raw))
    assert {"CLICKHOUSE_PASSWORD", "MINIO_ROOT_PASSWORD", "s3.secret-key"} <= {name for _, name, _ in entries}
    for service, name, value in entries:
        assert FROM_ENV_FILE.match(value), f"{service}: {name}={value!r} must be ${{VAR:?message}}, read from .env"
    # and they arrive: each rendered secret is one of the env file's values
    given = {line.partition("=")[2] for line in env_file.read_text().splitlines()}
    for service in rendered["services"].values():
        for name, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(name):
                assert value in given, (name, value)
    # the committed example holds every required variable, each secret a placeholder
    example = cfg.read_env_file(ENV_EXAMPLE)
    assert required_variables(COMPOSE_FILE.read_text()) <= set(example), "compose.env.example lacks a required variable"
    for name, value in example.items():
        if SECRET_NAME.search(name):
            assert value == "change-me", f"compose.env.example: {name} must be the placeholder change-me"
    assert ".env" in (REPO_ROOT / ".gitignore").read_text().split()


def test_the_stack_refuses_to_start_while_a_credential_is_the_placeholder(rendered: Json, raw: Json, workdir: Path):
    """compose only checks that each variable is set; check-secrets stops everything that takes a credential while
    one still holds compose.env.example's change-me. Its script runs here with a POSIX shell, as in busybox."""
    checker = rendered["services"]["check-secrets"]
    [script] = checker["command"]
    script = script.replace("$$", "$")  # `config` prints the file's $$ escapes; the container gets single $
    secrets_given = checker["environment"]
    assert set(secrets_given) == {name for name in required_variables(COMPOSE_FILE.read_text())
                                  if SECRET_NAME.search(name) or name == "ALERT_WEBHOOK_URL"}

    def check(environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", script], env={**environ, "PATH": os.environ["PATH"]}, capture_output=True,
                              text=True, timeout=30)

    assert check(secrets_given).returncode == 0
    for name in secrets_given:
        refused = check({**secrets_given, name: "change-me"})
        assert refused.returncode == 1 and name in refused.stderr, (name, refused.stderr)
    example = cfg.read_env_file(ENV_EXAMPLE)
    assert check({name: example[name] for name in secrets_given}).returncode == 1
    # whatever takes a credential waits for the check, itself or through what it waits for
    services = raw["services"]

    def waits_for_check(name: str) -> bool:
        depends = services[name].get("depends_on") or {}
        return "check-secrets" in depends or any(waits_for_check(d) for d in depends)

    for name, service in services.items():
        environment = service.get("environment") or {}
        takes_secret = any(SECRET_NAME.search(k) for k in environment) or "FLINK_PROPERTIES" in environment
        if name != "check-secrets" and takes_secret:
            assert waits_for_check(name), f"{name} starts without the secrets check"


# --- the job's containers ----------------------------------------------------------------------------------------


def test_job_containers_get_only_settings_names_and_valid_values(rendered: Json):
    read = set(cfg._ENV_NAMES.values())
    services = job_image_services(rendered)
    assert {"jobmanager", "taskmanager", "loader", "heartbeat", "migrate", "kafka-topics"} <= set(services)
    for name, service in services.items():
        environment = service.get("environment") or {}
        unknown = set(environment) - read - FLINK_IMAGE_VARIABLES
        assert not unknown, f"{name}: {unknown} are not variables telemetry/settings.py reads"
        cfg.load({k: v for k, v in environment.items() if k in read})  # each value passes settings' validation


def test_the_simulator_comes_from_the_tooling_image_not_the_job_image(rendered: Json):
    simulator = rendered["services"]["simulator"]
    assert simulator["build"]["dockerfile"] == DEV_DOCKERFILE and Path(simulator["build"]["context"]) == REPO_ROOT
    assert (REPO_ROOT / f"{DEV_DOCKERFILE}.dockerignore").is_file()  # BuildKit's ignore file for that Dockerfile
    assert simulator["command"][:3] == ["python", "-m", "dev.simulator"]
    assert set(simulator.get("environment") or {}) <= set(cfg._ENV_NAMES.values())


def test_flink_image_is_built_from_the_pinned_apache_flink(rendered: Json):
    flink, version = pinned("apache-flink"), tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    services = job_image_services(rendered)
    images = {s["image"] for s in services.values()}
    assert images == {f"ai-telemetry-job:{version}-flink{flink}"}, images
    froms = re.findall(r"^FROM\s+(\S+)", (REPO_ROOT / JOB_DOCKERFILE).read_text(), re.MULTILINE)
    assert [f for f in froms if f.startswith("flink:")] == [f"flink:{flink}-scala_2.12-java17"], froms
    for name, service in services.items():
        assert Path(service["build"]["context"]) == REPO_ROOT, name


# Flink 2.2.1's own parsing of the jobmanager's command: the image's standalone-job.sh passes --configDir, then our
# args, to StandaloneApplicationClusterEntryPoint, which stops at the first token it does not know; a Python program
# is recognised by -py / -pym among the rest (PythonDriver then), whose own options are parsed before the module's.
ENTRYPOINT_ARGS_JAVA = """
import org.apache.commons.cli.*;
import org.apache.flink.client.cli.CliFrontendParser;
import org.apache.flink.client.program.PackagedProgramUtils;
import org.apache.flink.container.entrypoint.StandaloneApplicationClusterConfigurationParserFactory;
import org.apache.flink.runtime.entrypoint.ClusterConfiguration;
import org.apache.flink.runtime.entrypoint.parser.CommandLineParser;

public class EntrypointArgs {
    @SuppressWarnings({"rawtypes", "unchecked"})
    public static void main(String[] args) throws Exception {
        // raw types: the parsed configuration's own class is package-private; its public superclass has the args
        CommandLineParser parser = new CommandLineParser(new StandaloneApplicationClusterConfigurationParserFactory());
        String[] program = ((ClusterConfiguration) parser.parse(args)).getArgs();
        System.out.println("python\\t" + PackagedProgramUtils.isPython(program));
        Options driver = new Options();
        for (Option o : new Option[] {CliFrontendParser.PY_OPTION, CliFrontendParser.PYMODULE_OPTION,
                CliFrontendParser.PYFILES_OPTION, CliFrontendParser.PYREQUIREMENTS_OPTION,
                CliFrontendParser.PYARCHIVE_OPTION, CliFrontendParser.PYEXEC_OPTION,
                CliFrontendParser.PYCLIENTEXEC_OPTION, CliFrontendParser.PYTHON_PATH}) {
            driver.addOption(o);
        }
        CommandLine python = new DefaultParser().parse(driver, program, true);
        for (Option o : python.getOptions()) System.out.println("driver\\t" + o.getLongOpt() + "\\t" + o.getValue());
        for (String arg : python.getArgs()) System.out.println("program\\t" + arg);
    }
}
"""


def test_jobmanager_command_reaches_the_job_module(rendered: Json, workdir: Path, monkeypatch: pytest.MonkeyPatch):
    jobmanager = rendered["services"]["jobmanager"]
    command = jobmanager["command"]
    assert command[0] == "standalone-job", "the Flink image's entrypoint starts an application cluster on standalone-job"
    java = shutil.which("java")
    assert java, "java is needed (make system-deps)"
    source = workdir / "EntrypointArgs.java"
    source.write_text(ENTRYPOINT_ARGS_JAVA)
    classpath = os.pathsep.join(str(p) for p in sorted((Path(pyflink.__file__).parent / "lib").glob("*.jar")))
    out = subprocess.run([java, "-cp", classpath, str(source), "--configDir", "/opt/flink/conf", *command[1:]],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [line.split("\t") for line in out.stdout.splitlines()]
    assert ["python", "true"] in lines, "Flink would not run this as a Python program"
    driver = {f[1]: f[2] for f in lines if f[0] == "driver"}
    assert driver == {"pyModule": "jobs.telemetry_job", "pyFiles": "/opt/telemetry"}, driver
    program = [f[1] for f in lines if f[0] == "program"]
    assert program == command[command.index("/opt/telemetry") + 1:], "the module must get every flag after -pyfs"
    # The module's own parser, in the container's environment (the flags' defaults come from it).
    for key, value in jobmanager["environment"].items():
        monkeypatch.setenv(key, value)
    from jobs.telemetry_job import parse_args

    args = parse_args(program)
    assert args.bootstrap == jobmanager["environment"]["KAFKA_DIRECT_URL"]
    assert args.checkpoint_dir.startswith("s3://") and args.lake_uri.startswith("s3://")
    assert args.prometheus_url == "http://prometheus:9090"


def test_services_wait_for_what_they_need(rendered: Json):
    services = rendered["services"]
    for name, service in services.items():
        one_shot = service.get("restart") == "no" and name != "jobmanager"
        assert one_shot or service.get("healthcheck"), f"{name}: a long-running service needs a healthcheck"
        for dependency, spec in (service.get("depends_on") or {}).items():
            condition = spec["condition"]
            if condition == "service_healthy":
                assert services[dependency].get("healthcheck"), f"{name} waits for {dependency}'s missing healthcheck"
            elif condition == "service_completed_successfully":
                assert services[dependency].get("restart") == "no", f"{dependency} is not a one-shot service"
            else:
                assert condition == "service_started", (name, dependency, condition)
    assert services["jobmanager"]["depends_on"]["kafka-topics"]["condition"] == "service_completed_successfully"
    assert services["loader"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


# --- monitoring wiring -------------------------------------------------------------------------------------------


def mounts(service: Json) -> dict[str, str]:
    """container path -> host path of a service's bind mounts."""
    return {v["target"]: v["source"] for v in service.get("volumes", []) if v["type"] == "bind"}


def test_prometheus_scrapes_flink_and_the_loader_and_loads_the_alert_rules(rendered: Json, workdir: Path):
    services = rendered["services"]
    prometheus_mounts = mounts(services["prometheus"])
    config_path = next(t for t, s in prometheus_mounts.items() if Path(s) == PROMETHEUS_CONFIG)
    assert f"--config.file={config_path}" in services["prometheus"]["command"]
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    for rule_file in config["rule_files"]:
        assert rule_file in prometheus_mounts and Path(prometheus_mounts[rule_file]).is_file(), rule_file
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    reporter_port = re.search(r"^metrics\.reporter\.prom\.port: (\d+)$",
                              services["jobmanager"]["environment"]["FLINK_PROPERTIES"], re.MULTILINE)
    assert reporter_port, "the Flink Prometheus reporter is not configured"
    assert {f"jobmanager:{reporter_port[1]}", f"taskmanager:{reporter_port[1]}"} <= targets, targets
    # Flink parses its configuration as YAML: the patterns are quoted, and are the local session cluster's.
    properties = yaml.safe_load(services["jobmanager"]["environment"]["FLINK_PROPERTIES"])
    assert properties["metrics.reporter.prom.filter.excludes"].split(";") == list(REPORTER_EXCLUDES)
    # the loader's /metrics listens on the compose network (not only its own loopback) at the port scraped
    loader_env = services["loader"]["environment"]
    assert loader_env["LOADER_METRICS_HOST"] == "0.0.0.0" and "network_mode" not in services["loader"]
    assert f"loader:{loader_env['LOADER_METRICS_PORT']}" in targets
    # promtool's own check, with the rule files where this checkout has them
    local = workdir / "prometheus.yml"
    local.write_text(yaml.safe_dump({**config, "rule_files": [prometheus_mounts[r] for r in config["rule_files"]]}))
    result = subprocess.run(["promtool", "check", "config", str(local)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_mounts_the_provisioning_and_gets_every_variable_it_expands(rendered: Json):
    grafana = rendered["services"]["grafana"]
    grafana_mounts = mounts(grafana)
    assert Path(grafana_mounts["/etc/grafana/provisioning"]) == GRAFANA_PROVISIONING
    dashboards = yaml.safe_load((GRAFANA_PROVISIONING / "dashboards" / "dashboards.yml").read_text())
    for provider in dashboards["providers"]:
        assert Path(grafana_mounts[provider["options"]["path"]]) == REPO_ROOT / "monitoring" / "grafana" / "dashboards"
    expanded = set()
    for path in GRAFANA_PROVISIONING.rglob("*.y*ml"):
        text = re.sub(r"(^|\s)#.*$", "", path.read_text(), flags=re.MULTILINE)  # comments expand nothing
        expanded |= set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)\}?", text))
    missing = expanded - set(grafana["environment"])
    assert not missing, f"Grafana's provisioning expands {missing}, which the grafana service does not set"


def test_the_api_reads_with_least_privilege_and_waits_for_the_migrations(rendered: Json):
    services = rendered["services"]
    api = services["api"]
    env = api["environment"]
    assert api["command"] == ["python", "-m", "services.api"] and env["API_HOST"] == "0.0.0.0"
    assert env["CLICKHOUSE_READER_USER"] == "reader" and "CLICKHOUSE_PASSWORD" not in env
    assert env["POSTGRES_API_USER"] == "telemetry_api" and "POSTGRES_PASSWORD" not in env
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres-api-login"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["environment"]["POSTGRES_PASSWORD"] == services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert services["postgres"]["image"].startswith("postgres:15.")  # the local stack's Debian PostgreSQL is 15
    for name in ("api", "audit-seal"):
        cfg.load({k: v for k, v in services[name]["environment"].items()})



def test_the_quota_service_reads_with_least_privilege_and_is_scraped(rendered: Json):
    services = rendered["services"]
    quota = services["quota"]
    env = quota["environment"]
    assert quota["command"] == ["python", "-m", "services.quota"] and env["QUOTA_HOST"] == "0.0.0.0"
    assert env["CLICKHOUSE_READER_USER"] == "reader" and "CLICKHOUSE_PASSWORD" not in env
    assert env["POSTGRES_API_USER"] == "telemetry_api" and "POSTGRES_PASSWORD" not in env
    assert quota["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert quota["depends_on"]["kafka-topics"]["condition"] == "service_completed_successfully"
    config = cfg.load(dict(env))
    assert [p["published"] for p in quota["ports"]] == [str(config.quota_port)] and quota["ports"][0]["host_ip"] == "127.0.0.1"
    scrape = yaml.safe_load((REPO_ROOT / "monitoring" / "prometheus" / "prometheus.compose.yml").read_text())
    targets = {j["job_name"]: j["static_configs"][0]["targets"] for j in scrape["scrape_configs"]}
    assert targets["telemetry-quota"] == [f"quota:{config.quota_port}"]


def test_the_report_profile_reads_as_the_reader_and_writes_to_the_lake_bucket(rendered: Json, workdir: Path,
                                                                             monkeypatch: pytest.MonkeyPatch):
    from services.reports.__main__ import parse_args

    reports = rendered["services"]["reports"]
    env = reports["environment"]
    assert env["CLICKHOUSE_READER_USER"] == "reader" and "CLICKHOUSE_PASSWORD" not in env
    assert reports["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert reports["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    config = cfg.load(dict(env))
    assert config.lake_bucket == rendered["services"]["minio-init"]["environment"]["LAKE_BUCKET"]
    python, dash_m, module, *args = reports["command"]
    assert (python, dash_m, module) == ("python", "-m", "services.reports")
    parsed = parse_args(args)
    assert parsed.s3 and parsed.every == 86400 and parsed.month is None
