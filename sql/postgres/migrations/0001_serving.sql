-- The operational store beside ClickHouse: who the tenants, departments, projects and users are, who may call the
-- API (grants, API tokens), erasure requests, quota limits and report schedules, and the API's tamper-evident
-- access log with the ingest audit log's hourly digests.
--
-- Privileges. The schema owner (POSTGRES_USER) runs migrations and the token / audit commands. The API logs in as
-- {{api_user}} (POSTGRES_API_USER) and gets only what it needs: it reads the directory, the grants and the token
-- hashes, records erasures, and appends to the access log through append_access_log(), never writing the log's
-- rows itself. Its password is set outside this file (the local stack generates it; in production the DBA).

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{{api_user}}') THEN
        CREATE ROLE "{{api_user}}" LOGIN;
    END IF;
END
$$;

CREATE TABLE tenants
(
    tenant_id  text PRIMARY KEY CHECK (tenant_id <> ''),
    name       text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE departments
(
    tenant_id     text NOT NULL REFERENCES tenants ON DELETE CASCADE,
    department_id text NOT NULL CHECK (department_id <> ''),
    name          text NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, department_id)
);

CREATE TABLE projects
(
    tenant_id     text NOT NULL REFERENCES tenants ON DELETE CASCADE,
    project_id    text NOT NULL CHECK (project_id <> ''),
    department_id text NOT NULL,
    name          text NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, project_id),
    FOREIGN KEY (tenant_id, department_id) REFERENCES departments
);

-- A person's identity: only roles granted identity see user_id; display_name and email are cleared by an erasure.
CREATE TABLE users
(
    tenant_id     text NOT NULL REFERENCES tenants ON DELETE CASCADE,
    user_id       text NOT NULL CHECK (user_id <> ''),
    department_id text NOT NULL DEFAULT '',
    display_name  text NOT NULL DEFAULT '',
    email         text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    erased_at     timestamptz,
    PRIMARY KEY (tenant_id, user_id)
);

-- Who may call the API: a principal (an OIDC subject, or the name an API token is issued to) has one role in a set
-- of tenants. The role names are services/api/permissions.py's; a grant naming another role is refused per request.
CREATE TABLE grants
(
    principal  text PRIMARY KEY CHECK (principal <> ''),
    role       text NOT NULL,
    tenants    text[] NOT NULL CHECK (cardinality(tenants) > 0),
    granted_by text NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now()
);

-- Opaque API tokens, `tlm_<token_id>_<secret>`: only the SHA-256 of the secret is kept. The secret is 256 random
-- bits, so a fast hash is enough (nothing to brute-force); revoked_at takes effect on the next request.
CREATE TABLE api_tokens
(
    token_id      text PRIMARY KEY,
    principal     text NOT NULL,
    secret_sha256 bytea NOT NULL,
    description   text NOT NULL DEFAULT '',
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz
);
CREATE INDEX api_tokens_principal ON api_tokens (principal);

-- A user whose identity was erased: every later API response shows only the pseudonym.
CREATE TABLE erasures
(
    tenant_id    text NOT NULL,
    user_id      text NOT NULL,
    requested_by text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    reason       text NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, user_id)
);

-- Limits the quota service will enforce (tokens, credits, ... per user / project / department / tenant and day or
-- month), exact decimals like the money in ClickHouse.
CREATE TABLE quota_limits
(
    tenant_id   text NOT NULL REFERENCES tenants ON DELETE CASCADE,
    scope       text NOT NULL CHECK (scope IN ('tenant', 'department', 'project', 'user')),
    scope_id    text NOT NULL,
    metric      text NOT NULL,
    period      text NOT NULL CHECK (period IN ('day', 'month')),
    limit_value numeric(38, 6) NOT NULL CHECK (limit_value >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, scope, scope_id, metric, period)
);

CREATE TABLE report_schedules
(
    schedule_id bigserial PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants ON DELETE CASCADE,
    name        text NOT NULL,
    report      text NOT NULL,
    cron        text NOT NULL,
    recipients  text[] NOT NULL DEFAULT '{}',
    enabled     boolean NOT NULL DEFAULT true,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The API's access log, hash-chained: hash = sha256(prev_hash || '\n' || record) in hex, prev_hash of the first
-- record 64 zeros, record the canonical JSON services/api/accesslog.py writes. Rows are only ever added, by
-- append_access_log(); `python -m services.api.audit verify` recomputes the chain and names the first record that
-- was changed, deleted or inserted.
CREATE TABLE access_log
(
    seq       bigint PRIMARY KEY,
    record    text NOT NULL,
    prev_hash text NOT NULL,
    hash      text NOT NULL
);

-- One lock serialises appends, so each record chains to the one before it; the function runs with the owner's
-- rights, so the API can append but not write seq or hash itself.
CREATE FUNCTION append_access_log(p_record text) RETURNS TABLE (seq bigint, hash text)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS
$$
DECLARE
    last_seq  bigint;
    last_hash text;
    new_hash  text;
BEGIN
    PERFORM pg_advisory_xact_lock(727365);
    SELECT a.seq, a.hash INTO last_seq, last_hash FROM access_log AS a ORDER BY a.seq DESC LIMIT 1;
    IF last_seq IS NULL THEN
        last_seq := 0;
        last_hash := repeat('0', 64);
    END IF;
    new_hash := encode(sha256(convert_to(last_hash || E'\n' || p_record, 'UTF8')), 'hex');
    INSERT INTO access_log AS a (seq, record, prev_hash, hash) VALUES (last_seq + 1, p_record, last_hash, new_hash);
    RETURN QUERY SELECT last_seq + 1, new_hash;
END
$$;

-- The logs refuse changes; an owner who drops this trigger to edit a row is caught by verify all the same.
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END
$$;
CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- The ingest audit log's (ClickHouse audit_log) digest per hour, chained; the same rows are written to ClickHouse's
-- audit_digests. `python -m services.api.audit seal` writes them, `verify` compares both with the rows.
CREATE TABLE audit_digests
(
    hour        timestamptz PRIMARY KEY,
    rows        bigint NOT NULL,
    rows_sha256 text NOT NULL,
    prev_digest text NOT NULL,
    digest      text NOT NULL,
    sealed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER audit_digests_append_only BEFORE UPDATE OR DELETE ON audit_digests
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

REVOKE ALL ON FUNCTION append_access_log(text) FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO "{{api_user}}";
GRANT SELECT ON tenants, departments, projects, users, grants, api_tokens, erasures, quota_limits, report_schedules,
    access_log, audit_digests TO "{{api_user}}";
GRANT INSERT ON erasures TO "{{api_user}}";
GRANT UPDATE (display_name, email, erased_at) ON users TO "{{api_user}}";
GRANT EXECUTE ON FUNCTION append_access_log(text) TO "{{api_user}}";
