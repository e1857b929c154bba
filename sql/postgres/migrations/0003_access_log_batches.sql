-- Group commit for the API's access log: the records of concurrent requests appended in one call, so one
-- transaction (one WAL flush, one round trip) carries many of them. The chain rule is append_access_log()'s
-- (0001), now implemented once here: records chain in array order, each to the one before it, under the same lock.

CREATE FUNCTION append_access_logs(p_records text[]) RETURNS TABLE (seq bigint, hash text)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS
$$
DECLARE
    last_seq  bigint;
    last_hash text;
    rec       text;
BEGIN
    IF p_records IS NULL OR array_position(p_records, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'append_access_logs: a record is NULL';
    END IF;
    PERFORM pg_advisory_xact_lock(727365);
    SELECT a.seq, a.hash INTO last_seq, last_hash FROM access_log AS a ORDER BY a.seq DESC LIMIT 1;
    IF last_seq IS NULL THEN
        last_seq := 0;
        last_hash := repeat('0', 64);
    END IF;
    FOREACH rec IN ARRAY p_records
        LOOP
            seq := last_seq + 1;
            hash := encode(sha256(convert_to(last_hash || E'\n' || rec, 'UTF8')), 'hex');
            INSERT INTO access_log AS a (seq, record, prev_hash, hash) VALUES (seq, rec, last_hash, hash);
            RETURN NEXT;
            last_seq := seq;
            last_hash := hash;
        END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION append_access_log(p_record text) RETURNS TABLE (seq bigint, hash text)
    LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS
$$
SELECT * FROM append_access_logs(ARRAY[p_record])
$$;

REVOKE ALL ON FUNCTION append_access_logs(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION append_access_logs(text[]) TO "{{api_user}}";
