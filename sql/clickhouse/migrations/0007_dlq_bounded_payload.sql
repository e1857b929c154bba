-- DLQ records are bounded whatever was produced: the job keeps the first 16 KiB of a rejected record's bytes
-- (pipeline/routing.py DLQ_PAYLOAD_BYTES) with the length and SHA-256 of the whole, so one huge record can no
-- longer outgrow the DLQ topic's maximum message size and stop the job. A Kafka tombstone (no value at all) has
-- payload '' and payload_encoding 'null'. Rows written before this migration keep their whole payload, and
-- read their length from it.
ALTER TABLE {{database}}.dlq_events
    ADD COLUMN IF NOT EXISTS payload_bytes UInt64 DEFAULT length(payload) CODEC(T64, ZSTD(1))
        COMMENT 'length of the original record value in bytes (0 for a tombstone)' AFTER payload_encoding,
    ADD COLUMN IF NOT EXISTS payload_sha256 String DEFAULT '' CODEC(ZSTD(1))
        COMMENT 'SHA-256 (hex) of the whole original value; empty for a tombstone' AFTER payload_bytes,
    ADD COLUMN IF NOT EXISTS payload_truncated UInt8 DEFAULT 0
        COMMENT '1 when payload holds only the first bytes of the value (see payload_bytes)' AFTER payload_sha256,
    COMMENT COLUMN payload 'the original record value, or its first 16 KiB: as is when UTF-8, else base64',
    COMMENT COLUMN payload_encoding 'utf-8, base64, or null (a Kafka record without a value)';
