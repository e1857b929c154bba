"""Settings: defaults, environment names from the seeds, and a clear error for each bad value."""

from pathlib import Path

import pytest

from telemetry import settings as cfg


def test_defaults_point_at_the_local_stack():
    s = cfg.load({})
    assert s.kafka_direct_url == "127.0.0.1:9092"
    assert s.clickhouse_url == "http://127.0.0.1:8123"
    assert s.retention_months == 12
    assert s.effective_lake_uri == str(s.state_dir / "lake")


def test_seed_environment_names_are_read():
    s = cfg.load({"KAFKA_DIRECT_URL": "k1:9092,k2:9092", "NODE_ID": "n-1", "VM_TYPE": "NV6", "TENANT_ID": "t-9",
                  "KAFKA_PROXY_URL": "http://proxy:8082/", "RETENTION_MONTHS": "24", "TELEMETRY_STATE_DIR": "/tmp/x"})
    assert (s.kafka_direct_url, s.node_id, s.vm_type, s.tenant_id) == ("k1:9092,k2:9092", "n-1", "NV6", "t-9")
    assert s.kafka_proxy_url == "http://proxy:8082"
    assert s.retention_months == 24
    assert s.state_dir == Path("/tmp/x")


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"KAFKA_DIRECT_URL": "localhost"}, "KAFKA_DIRECT_URL='localhost'"),
        ({"CLICKHOUSE_URL": "127.0.0.1:8123"}, "CLICKHOUSE_URL='127.0.0.1:8123' is not a URL"),
        ({"RETENTION_MONTHS": "twelve"}, "RETENTION_MONTHS='twelve'"),
        ({"RETENTION_MONTHS": "0"}, "from 1 to 120"),
        ({"LAKE_URI": "s3://"}, "needs a bucket"),
        ({"CLICKHOUSE_DATABASE": "tele-metry"}, "plain identifier"),
        ({"LOADER_METRICS_HOST": "0.0.0.0 9465"}, "LOADER_METRICS_HOST='0.0.0.0 9465' must be an address"),
    ],
)
def test_bad_values_are_named(env, fragment):
    with pytest.raises(cfg.SettingsError, match=None) as info:
        cfg.load(env)
    assert fragment in str(info.value)


def test_s3_credentials_come_from_env_or_the_generated_file(tmp_path):
    assert cfg.load({"S3_ACCESS_KEY": "a", "S3_SECRET_KEY": "b"}).s3_credentials() == ("a", "b")
    s = cfg.load({"TELEMETRY_STATE_DIR": str(tmp_path)})
    with pytest.raises(cfg.SettingsError, match="make stack-up"):
        s.s3_credentials()
    s.minio_credentials_file.parent.mkdir(parents=True)
    s.minio_credentials_file.write_text("MINIO_ROOT_USER=u\nMINIO_ROOT_PASSWORD=p\n")
    assert s.s3_credentials() == ("u", "p")


def test_describe_masks_secrets():
    rows = dict(cfg.describe(cfg.load({"CLICKHOUSE_PASSWORD": "hunter2"})))
    assert rows["CLICKHOUSE_PASSWORD"] == "***"
