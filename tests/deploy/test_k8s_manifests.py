"""k8s/flink-operator against the Flink Kubernetes Operator's published CRD (strictly: unknown fields are errors) and
against what the manifests run: the pinned Flink, the image, the flink-python jar, the Python modules and their
flags (through Flink's own argument parser), and the variables telemetry/settings.py reads. No cluster is needed."""

from __future__ import annotations

import copy
import importlib
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import kubernetes_validate
import pytest
import yaml

from telemetry import settings as cfg
from telemetry import topics
from telemetry.settings import REPO_ROOT
from dev.stack.flink import REPORTER_EXCLUDES

K8S = REPO_ROOT / "k8s" / "flink-operator"
CRD_DIR = REPO_ROOT / "lib" / "k8s-operator"
CRD_ENTRY = "META-INF/fabric8/flinkdeployments.flink.apache.org-v1.yml"
ENUM_PATH = ("properties", "spec", "properties", "flinkVersion", "enum")
IMAGE_CODE_DIR = "/opt/telemetry"  # where the Dockerfile puts jobs/, udfs/, telemetry/, schemas/
# `flink run` options that only configure Python: the only ones Flink may take out of a PythonDriver job's args.
PYTHON_OPTIONS = {"pyModule", "python", "pyFiles", "pyArchives", "pyRequirements", "pyExecutable",
                  "pyClientExecutable", "pyPythonPath"}
PLACEHOLDER = re.compile(r"<[^<>]+>")
K8S_SCHEMA_VERSION = "1.37.0"  # the newest Kubernetes whose schema kubernetes-validate (pyproject dev pins) carries

Json = dict[str, Any]


def pinned_flink() -> str:
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d.split("==")[1] for d in deps if d.startswith("apache-flink=="))


def flink_version_enum() -> str:
    major, minor = pinned_flink().split(".")[:2]
    return f"v{major}_{minor}"


def pyflink_home() -> Path:
    spec = importlib.util.find_spec("pyflink")
    assert spec and spec.submodule_search_locations, "apache-flink is not installed in this Python"
    return Path(list(spec.submodule_search_locations)[0])


@lru_cache
def kustomization() -> Json:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@lru_cache
def documents() -> tuple[tuple[str, Json], ...]:
    """(file name, document) for every document of every file the kustomization lists."""
    return tuple((name, doc) for name in kustomization()["resources"]
                 for doc in yaml.safe_load_all((K8S / name).read_text()) if doc is not None)


def of_kind(kind: str) -> list[tuple[str, Json]]:
    return [(name, doc) for name, doc in documents() if doc["kind"] == kind]


def deployments() -> list[Json]:
    return [doc for _, doc in of_kind("FlinkDeployment")]


def configmap_data() -> dict[str, str]:
    [(_, configmap)] = of_kind("ConfigMap")
    return configmap["data"]


def secret_example() -> dict[str, str]:
    return cfg.read_env_file(K8S / "secret.example.env")


def main_container(deployment: Json) -> Json:
    [container] = [c for c in deployment["spec"]["podTemplate"]["spec"]["containers"] if c["name"] == "flink-main-container"]
    return container


@lru_cache
def published_schema() -> Json:
    """The v1beta1 openAPIV3Schema of FlinkDeployment, as the operator's API jar on Maven Central carries it."""
    jars = sorted(CRD_DIR.glob("flink-kubernetes-operator-api-*.jar"))
    assert len(jars) == 1, f"expected one operator API jar in {CRD_DIR}, found {jars}: run `make jars`"
    with zipfile.ZipFile(jars[0]) as jar:
        crd = yaml.safe_load(jar.read(CRD_ENTRY))
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    return version["schema"]["openAPIV3Schema"]


def widened(schema: Json) -> Json:
    """The one change to the published schema: operator 1.10.0 (the newest on Maven Central here) predates Flink 2,
    so its flinkVersion enum ends at v1_20. Operator 1.13.0 added v2_2; the pinned Flink needs it."""
    out = copy.deepcopy(schema)
    node: Any = out
    for key in ENUM_PATH:
        node = node[key]
    node.append(flink_version_enum())
    return out


def differences(a: Any, b: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths where two JSON values differ (the deepest container holding the difference)."""
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return [p for k in a for p in differences(a[k], b[k], (*path, k))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b)) for p in differences(x, y, (*path, i))]
    return [] if a == b else [path]


def strict(schema: Json) -> Json:
    """What `kubectl apply --validate=strict` enforces: a field the schema does not declare is an error. The CRD's
    root omits apiVersion / kind / metadata (the API server adds them); the metadata here is the part of
    ObjectMeta these manifests use."""
    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node \
                    and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    out = copy.deepcopy(schema)
    strings = {"type": "object", "additionalProperties": {"type": "string"}}
    out["properties"] = {
        "apiVersion": {"enum": ["flink.apache.org/v1beta1"]},
        "kind": {"enum": ["FlinkDeployment"]},
        "metadata": {"type": "object", "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                                                      "labels": strings, "annotations": strings}},
        **out["properties"],
    }
    out["required"] = ["apiVersion", "kind", "metadata", "spec"]
    close(out)
    return out


@lru_cache
def validator() -> jsonschema.protocols.Validator:
    schema = strict(widened(published_schema()))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(doc: Json) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator().iter_errors(doc)]


# --- the kustomization and the CRD ------------------------------------------------------------------------------


def test_kustomization_lists_every_yaml_file():
    listed = kustomization()["resources"]
    on_disk = sorted(p.name for p in K8S.iterdir() if p.suffix in (".yaml", ".yml") and p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk
    assert {"FlinkDeployment", "ConfigMap", "ServiceAccount", "Role", "RoleBinding", "Job", "StatefulSet", "Service",
            "Deployment", "NetworkPolicy", "CronJob"} == {d["kind"] for _, d in documents()}


def test_widening_the_flink_version_enum_is_the_only_change_to_the_published_crd():
    published = published_schema()
    assert flink_version_enum() not in published["properties"]["spec"]["properties"]["flinkVersion"]["enum"], (
        "the published CRD knows the pinned Flink now: drop widened() and use the schema as published")
    assert differences(published, widened(published)) == [ENUM_PATH]


@pytest.mark.parametrize("name", [d["metadata"]["name"] for d in deployments()])
def test_flink_deployments_match_the_crd_strictly(name: str):
    [doc] = [d for d in deployments() if d["metadata"]["name"] == name]
    assert schema_errors(doc) == []


@pytest.mark.parametrize("change, fragment", [
    (lambda spec: spec["job"].update(upgradeMod=spec["job"].pop("upgradeMode")), "'upgradeMod' was unexpected"),
    (lambda spec: spec["job"].update(upgradeMode="savepoints"), "'savepoints' is not one of"),
    (lambda spec: spec.update(flinkVersion="v2_9"), "'v2_9' is not one of"),
    (lambda spec: spec["podTemplate"]["spec"]["containers"][0].update(envFrm=[]), "'envFrm' was unexpected"),
    (lambda spec: spec["flinkConfiguration"].update({"parallelism.default": 2}), "2 is not of type 'string'"),
], ids=["misspelled field", "bad enum", "unknown flinkVersion", "unknown podTemplate field", "non-string config"])
def test_the_validator_rejects_unknown_fields_and_bad_values(change: Any, fragment: str):
    doc = copy.deepcopy(deployments()[0])
    change(doc["spec"])
    errors = schema_errors(doc)
    assert any(fragment in e for e in errors), errors


def core_errors(doc: Json) -> list[str]:
    """Errors of a core Kubernetes object against the API's own schema (kubernetes-validate's copy of the OpenAPI
    of Kubernetes 1.37), strictly: an unknown field is an error."""
    try:
        kubernetes_validate.validate(doc, K8S_SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


@pytest.mark.parametrize("name, kind", [(d["metadata"]["name"], d["kind"]) for _, d in documents()
                                        if d["kind"] != "FlinkDeployment"])
def test_core_documents_match_the_kubernetes_schema_strictly(name: str, kind: str):
    [doc] = [d for _, d in documents() if d["metadata"]["name"] == name and d["kind"] == kind]
    assert "namespace" not in doc["metadata"], f"{name}: the kustomization sets the namespace"
    assert core_errors(doc) == []


@pytest.mark.parametrize("name", [d["metadata"]["name"] for d in deployments()])
def test_flink_pod_templates_are_valid_pods(name: str):
    # The CRD leaves podTemplate open (any fields): the operator merges it into its pods, so it must be a Pod.
    [doc] = [d for d in deployments() if d["metadata"]["name"] == name]
    assert core_errors(doc["spec"]["podTemplate"]) == []


@pytest.mark.parametrize("change, fragment", [
    (lambda pod: pod["containers"][0].update(envFrm=[]), "'envFrm' was unexpected"),
    (lambda pod: pod["containers"][0]["ports"][0].update(containerPort="9465"), "is not of type 'integer'"),
    (lambda pod: pod["containers"][0].pop("name"), "'name' is a required property"),
], ids=["misspelled field", "port as a string", "container without a name"])
def test_the_core_validator_rejects_unknown_fields_and_bad_values(change: Any, fragment: str):
    [doc] = copy.deepcopy([d for _, d in of_kind("StatefulSet")])
    change(doc["spec"]["template"]["spec"])
    errors = core_errors(doc)
    assert any(fragment in e for e in errors), errors


# --- what the manifests run ---------------------------------------------------------------------------------------


def test_flink_version_and_image_match_the_pinned_apache_flink():
    assert {d["spec"]["flinkVersion"] for d in deployments()} == {flink_version_enum()}
    froms = re.findall(r"^FROM\s+(\S+)", (K8S / "Dockerfile").read_text(), re.MULTILINE)
    flink = [f for f in froms if f.startswith("flink:")]
    assert flink == [f"flink:{pinned_flink()}-scala_2.12-java17"]
    python = [f for f in froms if f.startswith("python:")]
    requires = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert len(python) == 1 and f">={python[0].split(':')[1].split('-')[0]}," in requires, (python, requires)


def test_jar_uri_names_the_flink_python_jar_of_the_pinned_wheel():
    for deployment in deployments():
        uri = deployment["spec"]["job"]["jarURI"]
        assert uri.startswith("local:///opt/flink/opt/"), uri
        assert (pyflink_home() / "opt" / uri.rsplit("/", 1)[1]).is_file(), f"{uri} is not in the wheel's opt/"
        assert deployment["spec"]["job"]["entryClass"] == "org.apache.flink.client.python.PythonDriver"


# An application cluster hands job.args to ProgramOptionsUtils.configurePythonExecution: parsed with `flink run`'s
# options (stopping at the first unknown token), Python options become configuration, and PythonDriver gets
# --pyModule/--python plus the rest, which it parses again before the module sees what is left. Flink 2.2.1's code.
FLINK_ARGS_JAVA = """
import java.util.*;
import org.apache.commons.cli.*;
import org.apache.flink.client.cli.CliFrontendParser;

public class FlinkArgs {
    public static void main(String[] args) throws Exception {
        CommandLine run = CliFrontendParser.parse(CliFrontendParser.getRunCommandOptions(), args, true);
        List<String> driverArgs = new ArrayList<>();
        for (Option o : run.getOptions()) {
            System.out.println("flink\\t" + o.getLongOpt() + "\\t" + o.getValue());
            if (o.getOpt().equals("py") || o.getOpt().equals("pym")) {
                driverArgs.add("--" + o.getLongOpt());
                driverArgs.add(o.getValue());
            }
        }
        driverArgs.addAll(Arrays.asList(run.getArgs()));
        Options driver = new Options().addOption(CliFrontendParser.PY_OPTION).addOption(CliFrontendParser.PYMODULE_OPTION);
        for (String arg : new DefaultParser().parse(driver, driverArgs.toArray(new String[0]), true).getArgs()) {
            System.out.println("program\\t" + arg);
        }
    }
}
"""


@pytest.fixture(scope="module")
def flink_args(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Runs Flink's parser (the JDK's source launcher, flink-dist from the wheel) over a job's args: returns the
    options Flink took ({long name: value}) and the args the Python module gets."""
    java = shutil.which("java")
    assert java, "java is needed (make system-deps)"
    source = tmp_path_factory.mktemp("flink-args") / "FlinkArgs.java"
    source.write_text(FLINK_ARGS_JAVA)
    [dist] = (pyflink_home() / "lib").glob("flink-dist-*.jar")

    def parse(args: list[str]) -> tuple[dict[str, str], list[str]]:
        out = subprocess.run([java, "-cp", str(dist), str(source), *args], capture_output=True, text=True, check=True)
        lines = [line.split("\t") for line in out.stdout.splitlines()]
        return {f[1]: f[2] for f in lines if f[0] == "flink"}, [f[1] for f in lines if f[0] == "program"]

    yield parse


@pytest.mark.parametrize("name", ["telemetry-job", "telemetry-backfill"])
def test_job_args_reach_the_module_and_its_argparse_accepts_them(name: str, flink_args: Any,
                                                                  monkeypatch: pytest.MonkeyPatch):
    [deployment] = [d for d in deployments() if d["metadata"]["name"] == name]
    args = deployment["spec"]["job"]["args"]
    flink_options, program_args = flink_args(args)
    assert set(flink_options) <= PYTHON_OPTIONS, f"Flink's parser took job flags as its own: {flink_options}"
    assert flink_options.get("pyFiles") == IMAGE_CODE_DIR
    module = flink_options["pyModule"]
    first_flag = next(i for i, a in enumerate(args) if a.startswith("--"))
    assert program_args == args[first_flag:], "the module must get every arg after -pym / -pyfs, in order"
    source = REPO_ROOT / (module.replace(".", "/") + ".py")
    assert source.is_file(), f"-pym {module}: no {source.relative_to(REPO_ROOT)}"
    # The pods' environment: the flags' defaults come from it (settings.load at parse time).
    for key, value in {**configmap_data(), **secret_example()}.items():
        monkeypatch.setenv(key, value)
    parsed = parse_with_module(module, program_args)
    if parsed is None:
        return
    # --parallelism would override job.parallelism; without it (0) both jobs take the cluster's.
    assert parsed.parallelism in (0, deployment["spec"]["job"]["parallelism"])
    assert parsed.lake_uri.startswith("s3://")
    if module == "jobs.telemetry_job":
        assert parsed.checkpoint_dir == deployment["spec"]["flinkConfiguration"]["execution.checkpointing.dir"]
        assert parsed.bootstrap == configmap_data()["KAFKA_DIRECT_URL"]


def parse_with_module(module: str, args: list[str]) -> Any:
    """The module's own parse_args (a package's: its __main__'s) when it has one, else the flags its --help lists."""
    cli = importlib.import_module(module)
    if hasattr(cli, "__path__") and importlib.util.find_spec(f"{module}.__main__"):  # a package run with -m
        cli = importlib.import_module(f"{module}.__main__")
    parse_args = getattr(cli, "parse_args", None)
    if callable(parse_args):
        try:
            return parse_args(args)
        except SystemExit as exc:
            pytest.fail(f"{module} rejects {args} (exit {exc.code}; argparse's message is above)")
    help_text = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                               cwd=REPO_ROOT, check=True).stdout
    known = set(re.findall(r"--[a-z0-9][a-z0-9-]*", help_text))
    assert not [a for a in args if a.startswith("--") and a.split("=")[0] not in known], (args, known)
    return None


# --- configuration and secrets ------------------------------------------------------------------------------------


def test_configmap_and_secret_provide_only_variables_settings_reads():
    read = set(cfg._ENV_NAMES.values())
    assert set(configmap_data()) <= read, set(configmap_data()) - read
    assert set(secret_example()) <= read, set(secret_example()) - read
    cfg.load({**configmap_data(), **secret_example()})  # and each value passes settings' validation


def test_pods_take_configuration_from_the_configmap_and_credentials_from_the_secret():
    [(_, configmap)] = of_kind("ConfigMap")
    for deployment in deployments():
        container = main_container(deployment)
        refs = {next(iter(ref)): ref[next(iter(ref))]["name"] for ref in container["envFrom"]}
        assert refs == {"configMapRef": configmap["metadata"]["name"], "secretRef": "telemetry-secrets"}
        for env in container["env"]:
            key = env["valueFrom"]["secretKeyRef"]
            assert key["name"] == "telemetry-secrets" and key["key"] in secret_example(), env
        conf = deployment["spec"]["flinkConfiguration"]
        assert conf["s3.endpoint"] == configmap_data()["S3_ENDPOINT"]
        assert all(isinstance(v, str) for v in conf.values()), conf
    assert configmap_data()["LAKE_URI"].startswith("s3://")


def test_no_secret_values_in_committed_files():
    secret_names = set(secret_example())
    assert secret_names == {"S3_ACCESS_KEY", "S3_SECRET_KEY", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_READER_PASSWORD",
                            "POSTGRES_PASSWORD", "POSTGRES_API_PASSWORD", "API_PSEUDONYM_KEY"}
    assert all(PLACEHOLDER.fullmatch(v) for v in secret_example().values()), secret_example()
    assert not secret_names & set(configmap_data())
    assert not of_kind("Secret")
    for deployment in deployments():
        conf = deployment["spec"]["flinkConfiguration"]
        assert not [k for k in conf if re.search(r"access-key|secret|password", k)], conf
        assert all("value" not in env for env in main_container(deployment)["env"])
    for path in K8S.iterdir():
        for name in secret_names:
            # a secret's name may appear as a reference (`key: NAME`), never followed by a value unless a <placeholder>
            assert not re.search(rf"\b{name}\s*[:=][ \t]*(?!<)\S", path.read_text()), (path, name)


def test_streaming_state_and_ha_live_on_s3():
    [deployment] = [d for d in deployments() if d["spec"]["job"]["upgradeMode"] == "savepoint"]
    conf = deployment["spec"]["flinkConfiguration"]
    for key in ("execution.checkpointing.dir", "execution.checkpointing.savepoint-dir", "high-availability.storageDir"):
        assert conf[key].startswith("s3://"), key
    assert conf["high-availability.type"] == "kubernetes"
    assert conf["kubernetes.operator.deployment.rollback.enabled"] == "true"


def test_metrics_port_is_the_one_scraped_and_exposed():
    for deployment in deployments():
        port = deployment["spec"]["flinkConfiguration"]["metrics.reporter.prom.port"]
        assert deployment["spec"]["podTemplate"]["metadata"]["annotations"]["prometheus.io/port"] == port
        assert {"name": "metrics", "containerPort": int(port), "protocol": "TCP"} in main_container(deployment)["ports"]


def test_reporter_leaves_out_the_series_the_local_cluster_leaves_out():
    for deployment in deployments():
        excludes = deployment["spec"]["flinkConfiguration"]["metrics.reporter.prom.filter.excludes"]
        assert excludes.split(";") == list(REPORTER_EXCLUDES), deployment["metadata"]["name"]


def test_network_policy_covers_the_flink_pods_and_admits_the_metrics_port():
    """The reporter and the Python workers' Beam servers cannot bind the pod's loopback: the policy is what keeps
    them private, so it must select every FlinkDeployment's pods and still let Prometheus scrape them."""
    [(_, policy)] = of_kind("NetworkPolicy")
    [selected] = [e["values"] for e in policy["spec"]["podSelector"]["matchExpressions"] if e["key"] == "app"]
    assert sorted(selected) == sorted(d["metadata"]["name"] for d in deployments())
    ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule.get("ports", [])}
    for deployment in deployments():
        assert int(deployment["spec"]["flinkConfiguration"]["metrics.reporter.prom.port"]) in ports


def test_service_account_and_namespace_agree():
    [(_, account)] = of_kind("ServiceAccount")
    [(_, binding)] = of_kind("RoleBinding")
    assert {d["spec"]["serviceAccount"] for d in deployments()} == {account["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": kustomization()["namespace"]}]


def test_dockerfile_copies_exist_and_are_not_docker_ignored():
    ignored = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    sources = [src for line in re.findall(r"^COPY\s+(?!--from)(.+)$", (K8S / "Dockerfile").read_text(), re.MULTILINE)
               for src in line.split()[:-1] if not src.startswith("--")]
    assert "jobs/" in sources and "lib/plugins/s3-fs-hadoop/*.jar" in sources
    for src in sources:
        assert not [p for p in ignored if src.rstrip("/").startswith(p.rstrip("/"))], (src, ignored)
        if not src.startswith("lib/"):  # lib/ is `make jars` output
            assert list(REPO_ROOT.glob(src.rstrip("/"))), src


def test_the_job_image_holds_no_local_tooling():
    """What ships runs the job and the services: the simulator, the dev ClickHouse server, the stack and the demo
    (dev/) stay out of the build context, and no copied module imports them or the producers' SDK."""
    ignored = {line.strip().rstrip("/") for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {"dev", "telemetry_sdk", "tests", "benchmarks"} <= ignored
    copied = [src.rstrip("/") for line in re.findall(r"^COPY\s+(?!--from)(.+)$", (K8S / "Dockerfile").read_text(),
                                                      re.MULTILINE)
              for src in line.split()[:-1] if not src.startswith("--") and not src.startswith("lib/")]
    for package in copied:
        for path in (REPO_ROOT / package).rglob("*.py"):
            imports = re.findall(r"^\s*(?:from|import)\s+([\w.]+)", path.read_text(), re.MULTILINE)
            assert not [m for m in imports if m.split(".")[0] in ("dev", "telemetry_sdk", "tests")], path


# --- the setup Job, the loader and the heartbeat ------------------------------------------------------------------

WORKLOAD_KINDS = ("Job", "StatefulSet", "Deployment", "CronJob")


def workloads() -> list[Json]:
    return [doc for kind in WORKLOAD_KINDS for _, doc in of_kind(kind)]


def workload(kind: str, name: str | None = None) -> Json:
    [doc] = [d for _, d in of_kind(kind) if name is None or d["metadata"]["name"] == name]
    return doc


def pod_spec(doc: Json) -> Json:
    template = doc["spec"]["jobTemplate"]["spec"]["template"] if doc["kind"] == "CronJob" else doc["spec"]["template"]
    return template["spec"]


def containers(doc: Json) -> list[Json]:
    pod = pod_spec(doc)
    return [*pod.get("initContainers", []), *pod["containers"]]


def container_env(doc: Json, container: Json) -> dict[str, str]:
    """The environment a container starts with: its ConfigMap and Secret (the example's placeholders), then its env."""
    env: dict[str, str] = {}
    for ref in container.get("envFrom", []):
        if "configMapRef" in ref:
            assert ref["configMapRef"]["name"] == "telemetry-config", ref
            env.update(configmap_data())
        else:
            assert ref["secretRef"]["name"] == "telemetry-secrets", ref
            env.update(secret_example())
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item["valueFrom"]:  # one key of the Secret
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "telemetry-secrets" and ref["key"] in secret_example(), item
            env[item["name"]] = secret_example()[ref["key"]]
        else:  # the pod's own name: a StatefulSet's first pod
            assert item["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}, item
            env[item["name"]] = f"{doc['metadata']['name']}-0"
    return env


@pytest.mark.parametrize("kind, name", [(d["kind"], d["metadata"]["name"]) for d in workloads()])
def test_workloads_run_a_module_of_the_job_image_that_accepts_their_args_and_environment(
        kind: str, name: str, monkeypatch: pytest.MonkeyPatch):
    doc = workload(kind, name)
    interpreters = {Path(d["spec"]["flinkConfiguration"]["python.executable"]).name for d in deployments()}
    if kind not in ("Job", "CronJob"):  # a Job's selector is generated
        assert doc["spec"]["selector"]["matchLabels"].items() <= doc["spec"]["template"]["metadata"]["labels"].items()
    for container in containers(doc):
        assert container["image"] == deployments()[0]["spec"]["image"], container["name"]
        interpreter, dash_m, module, *args = container["command"]
        assert (interpreter, dash_m) in {(i, "-m") for i in interpreters}, container["command"]
        assert importlib.util.find_spec(module) is not None, f"{container['name']}: no module {module}"
        env = container_env(doc, container)
        cfg.load(env)  # every value passes settings' validation
        with monkeypatch.context() as m:
            for key in cfg._ENV_NAMES.values():
                m.delenv(key, raising=False)
            for key, value in env.items():
                m.setenv(key, value)
            parse_with_module(module, args)
        assert not [e for e in container.get("env", []) if e["name"] in secret_example() and "value" in e], \
            "credentials: the Secret"


def test_setup_creates_the_topics_before_migrating():
    job = workload("Job")
    pod = job["spec"]["template"]["spec"]
    assert [c["command"][2] for c in pod["initContainers"]] == ["telemetry.topic_admin"]
    assert [c["command"][2] for c in pod["containers"]] == ["telemetry.migrate"]
    assert pod["restartPolicy"] == "OnFailure"


def test_loader_pods_keep_their_name_as_member_id_and_serve_metrics_where_probed_and_scraped():
    loader = workload("StatefulSet")
    [service] = [d for _, d in of_kind("Service") if d["metadata"]["name"] == loader["metadata"]["name"]]
    assert loader["spec"]["serviceName"] == service["metadata"]["name"] and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == loader["spec"]["selector"]["matchLabels"]
    [container] = containers(loader)
    env = container_env(loader, container)
    assert env["LOADER_INSTANCE_ID"] == f"{loader['metadata']['name']}-0"  # the pod's name, stable in a StatefulSet
    assert env["LOADER_METRICS_HOST"] == "0.0.0.0"  # probes and Prometheus come from outside the pod
    port = int(env["LOADER_METRICS_PORT"])
    assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in container["ports"]
    assert loader["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}, probe
    most_partitions = max(topics.BY_NAME[t].partitions for t in topics.LOADER_TOPICS)
    assert 1 <= loader["spec"]["replicas"] <= most_partitions


def test_heartbeat_liveness_reads_the_file_the_heartbeat_touches():
    [container] = containers(workload("Deployment", "telemetry-heartbeat"))
    alive_file = container["command"][container["command"].index("--alive-file") + 1]
    probe = container["livenessProbe"]["exec"]["command"]
    assert probe[0] == container["command"][0] and f"getmtime('{alive_file}')" in probe[-1], probe


def test_the_api_gets_only_the_credentials_it_reads_with_and_serves_its_service():
    api = workload("Deployment", "telemetry-api")
    [container] = containers(api)
    env = container_env(api, container)
    assert "secretRef" not in str(container.get("envFrom")), "the API takes Secret keys one by one"
    assert {"CLICKHOUSE_READER_PASSWORD", "POSTGRES_API_PASSWORD", "API_PSEUDONYM_KEY"} <= set(env)
    assert "CLICKHOUSE_PASSWORD" not in env and "POSTGRES_PASSWORD" not in env  # the writers' passwords stay out
    config = cfg.load(env)
    assert config.clickhouse_reader_user == "reader" and config.postgres_api_user == "telemetry_api"
    assert config.api_host == "0.0.0.0" and config.postgres_url.startswith("postgresql://")
    [service] = [d for _, d in of_kind("Service") if d["metadata"]["name"] == "telemetry-api"]
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    [port] = service["spec"]["ports"]
    assert {"name": port["targetPort"], "containerPort": config.api_port, "protocol": "TCP"} in container["ports"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/metrics"  # a store outage is a 503, not a restart
    seal = workload("CronJob", "telemetry-audit-seal")
    [job] = containers(seal)
    assert job["command"][1:] == ["-m", "services.api.audit", "seal"]


def test_the_quota_service_gets_only_the_credentials_it_reads_with_and_serves_its_service():
    quota = workload("Deployment", "telemetry-quota")
    [container] = containers(quota)
    env = container_env(quota, container)
    assert "secretRef" not in str(container.get("envFrom")), "the quota service takes Secret keys one by one"
    assert {"CLICKHOUSE_READER_PASSWORD", "POSTGRES_API_PASSWORD"} <= set(env)
    assert "CLICKHOUSE_PASSWORD" not in env and "POSTGRES_PASSWORD" not in env and "API_PSEUDONYM_KEY" not in env
    config = cfg.load(env)
    assert config.clickhouse_reader_user == "reader" and config.postgres_api_user == "telemetry_api"
    assert config.quota_host == "0.0.0.0" and cfg.fail_policy(config.quota_fail_policy)["credits"] is False
    [service] = [d for _, d in of_kind("Service") if d["metadata"]["name"] == "telemetry-quota"]
    assert service["spec"]["selector"] == quota["spec"]["selector"]["matchLabels"]
    [port] = service["spec"]["ports"]
    assert {"name": port["targetPort"], "containerPort": config.quota_port, "protocol": "TCP"} in container["ports"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/metrics"


def test_the_report_schedule_reads_as_the_reader_and_writes_to_the_lake():
    reports = workload("CronJob", "telemetry-reports")
    [container] = containers(reports)
    env = container_env(reports, container)
    assert "secretRef" not in str(container.get("envFrom")), "the report takes Secret keys one by one"
    assert {"CLICKHOUSE_READER_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY"} <= set(env)
    assert "CLICKHOUSE_PASSWORD" not in env and "POSTGRES_PASSWORD" not in env
    args = parse_with_module("services.reports", container["command"][3:])
    assert args.command == "generate" and args.s3 and args.month is None  # the previous month
