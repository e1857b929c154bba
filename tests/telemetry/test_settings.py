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


def test_serving_settings_are_validated_with_the_fix_named():
    for env, fragment in (
        ({"POSTGRES_URL": "mysql://x:1/db"}, "POSTGRES_URL='mysql://x:1/db' is not a URL"),
        ({"POSTGRES_URL": "postgresql://u:secret@h:5432/db"}, "must not carry a password"),
        ({"POSTGRES_URL": "postgresql://h:5432/Tele-Metry"}, "plain lower-case identifier"),
        ({"POSTGRES_API_USER": "Robert'); DROP"}, "POSTGRES_API_USER"),
        ({"API_PORT": "http"}, "API_PORT='http' must be a whole number from 1 to 65535"),
        ({"API_MAX_ROWS": "0"}, "API_MAX_ROWS"),
        ({"API_OIDC_ISSUER": "https://idp/"}, "API_OIDC_ISSUER, API_OIDC_AUDIENCE and API_OIDC_JWKS_URL"),
        ({"API_PERSONAL_HOSTS": "(unclosed"}, "is not a regular expression"),
    ):
        with pytest.raises(cfg.SettingsError) as info:
            cfg.load(env)
        assert fragment in str(info.value), (env, str(info.value))


def test_postgres_logins_and_the_pseudonym_key_come_from_env_or_the_generated_file(tmp_path):
    s = cfg.load({"TELEMETRY_STATE_DIR": str(tmp_path), "POSTGRES_URL": "postgresql://db.example:6432/ops"})
    with pytest.raises(cfg.SettingsError, match="API_PSEUDONYM_KEY is not set"):
        s.pseudonym_key()
    s.postgres_credentials_file.parent.mkdir(parents=True)
    s.postgres_credentials_file.write_text("POSTGRES_USER=telemetry\nPOSTGRES_PASSWORD=o'wner\nPOSTGRES_API_USER=telemetry_api\n"
                                           "POSTGRES_API_PASSWORD=api-pw\nAPI_PSEUDONYM_KEY=" + "k" * 40 + "\n")
    assert s.pseudonym_key() == b"k" * 40
    assert "password='o\\'wner'" in s.postgres_conninfo() and "host='db.example'" in s.postgres_conninfo()
    assert "user='telemetry_api'" in s.postgres_conninfo(api=True) and "password='api-pw'" in s.postgres_conninfo(api=True)
    assert "dbname='ops'" in s.postgres_conninfo() and "dbname='postgres'" in s.postgres_conninfo(database="postgres")
    with pytest.raises(cfg.SettingsError, match="too short"):
        cfg.load({"API_PSEUDONYM_KEY": "short"}).pseudonym_key()
    rows = dict(cfg.describe(cfg.load({"POSTGRES_PASSWORD": "x", "API_PSEUDONYM_KEY": "y" * 40})))
    assert rows["POSTGRES_PASSWORD"] == "***" and rows["API_PSEUDONYM_KEY"] == "***"
