-- Tamper evidence for the audit trail (issue 17). audit_log stays a plain MergeTree that anyone with write access to
-- ClickHouse could change; these tables make a change show.
--
-- audit_digests: one row per hour of audit_log, written once by `python -m services.api.audit seal` after the hour
-- has settled: the hour's row count, a SHA-256 over its rows (each row hashed over every column but ingested_at,
-- in (ts, event_id, row hash) order; services/api/digests.py holds the encoding) and a digest chained to the
-- previous hour's. The same rows go to PostgreSQL's audit_digests, a store with other credentials, so rewriting the
-- log and one copy of its digests still shows against the other. `python -m services.api.audit verify` recomputes
-- every sealed hour from audit_log and names the first hour whose rows were changed, deleted or inserted.
--
-- access_log_anchors: the head (seq, hash) of the API's access log in PostgreSQL, copied here at each seal: a
-- PostgreSQL owner who rewrites the chain, hashes and all, no longer matches the anchors.
--
-- No TTL: digests must outlive the rows they cover (verify skips hours older than the audit log's retention).
CREATE TABLE IF NOT EXISTS {{database}}.audit_digests
(
    hour        DateTime('UTC') COMMENT 'start of the hour of audit_log.ts the digest covers',
    rows        UInt64,
    rows_sha256 String COMMENT 'SHA-256 (hex) over the hour''s row hashes in order',
    prev_digest String COMMENT 'the previous hour''s digest; 64 zeros for the first',
    digest      String COMMENT 'sha256(prev_digest \n hour \n rows \n rows_sha256)',
    sealed_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY hour;

CREATE TABLE IF NOT EXISTS {{database}}.access_log_anchors
(
    seq         UInt64 COMMENT 'access_log.seq in PostgreSQL',
    hash        String COMMENT 'its chained hash',
    anchored_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY seq;
