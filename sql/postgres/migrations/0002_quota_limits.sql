-- Quota limits as the quota service enforces them: a soft level (warn) and a hard level (deny) per tenant,
-- department, project or user, metric and period, and an append-only history of every change (who, when, why, the
-- levels before and after), written in the same transaction as the change by set_quota_limit(). The API changes
-- limits only through that function (its login cannot write either table itself); the quota service reads them.

ALTER TABLE quota_limits RENAME COLUMN limit_value TO hard_limit;
ALTER TABLE quota_limits ALTER COLUMN hard_limit DROP NOT NULL;
ALTER TABLE quota_limits ADD COLUMN soft_limit numeric(38, 6) CHECK (soft_limit >= 0);
ALTER TABLE quota_limits ADD COLUMN updated_by text NOT NULL DEFAULT '';
ALTER TABLE quota_limits ADD CONSTRAINT quota_limits_some_level CHECK (soft_limit IS NOT NULL OR hard_limit IS NOT NULL);
ALTER TABLE quota_limits ADD CONSTRAINT quota_limits_soft_below_hard
    CHECK (soft_limit IS NULL OR hard_limit IS NULL OR soft_limit <= hard_limit);
-- services/quota/metrics.py METRICS
ALTER TABLE quota_limits ADD CONSTRAINT quota_limits_metric
    CHECK (metric IN ('credits', 'gpu_seconds', 'cpu_seconds', 'tokens', 'cost'));
ALTER TABLE quota_limits ADD CONSTRAINT quota_limits_scope_id CHECK ((scope = 'tenant') = (scope_id = ''));

CREATE TABLE quota_limit_changes
(
    seq        bigserial PRIMARY KEY,
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by text NOT NULL,
    reason     text NOT NULL DEFAULT '',
    tenant_id  text NOT NULL,
    scope      text NOT NULL,
    scope_id   text NOT NULL,
    metric     text NOT NULL,
    period     text NOT NULL,
    old_soft   numeric(38, 6),
    old_hard   numeric(38, 6),
    new_soft   numeric(38, 6),
    new_hard   numeric(38, 6),
    deleted    boolean NOT NULL
);
CREATE TRIGGER quota_limit_changes_append_only BEFORE UPDATE OR DELETE ON quota_limit_changes
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER quota_limit_changes_no_truncate BEFORE TRUNCATE ON quota_limit_changes
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- Set a limit (p_soft and p_hard both NULL: delete it) and record the change; returns the change's seq, or no row
-- when there was nothing to delete. Runs with the owner's rights, so the API can change limits only this way.
CREATE FUNCTION set_quota_limit(p_tenant text, p_scope text, p_scope_id text, p_metric text, p_period text,
                                p_soft numeric, p_hard numeric, p_by text, p_reason text)
    RETURNS TABLE (seq bigint, changed_at timestamptz)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS
$$
DECLARE
    was_soft numeric;
    was_hard numeric;
    found_it boolean;
BEGIN
    SELECT q.soft_limit, q.hard_limit, true INTO was_soft, was_hard, found_it FROM quota_limits AS q
    WHERE q.tenant_id = p_tenant AND q.scope = p_scope AND q.scope_id = p_scope_id AND q.metric = p_metric
      AND q.period = p_period FOR UPDATE;
    IF p_soft IS NULL AND p_hard IS NULL THEN
        IF found_it IS NULL THEN
            RETURN;
        END IF;
        DELETE FROM quota_limits AS q WHERE q.tenant_id = p_tenant AND q.scope = p_scope AND q.scope_id = p_scope_id
            AND q.metric = p_metric AND q.period = p_period;
    ELSE
        INSERT INTO quota_limits AS q (tenant_id, scope, scope_id, metric, period, soft_limit, hard_limit, updated_by)
        VALUES (p_tenant, p_scope, p_scope_id, p_metric, p_period, p_soft, p_hard, p_by)
        ON CONFLICT (tenant_id, scope, scope_id, metric, period)
            DO UPDATE SET soft_limit = excluded.soft_limit, hard_limit = excluded.hard_limit, updated_at = now(),
                          updated_by = excluded.updated_by;
    END IF;
    RETURN QUERY
        INSERT INTO quota_limit_changes AS c (changed_by, reason, tenant_id, scope, scope_id, metric, period, old_soft,
                                              old_hard, new_soft, new_hard, deleted)
        VALUES (p_by, p_reason, p_tenant, p_scope, p_scope_id, p_metric, p_period, was_soft, was_hard, p_soft, p_hard,
                p_soft IS NULL AND p_hard IS NULL)
        RETURNING c.seq, c.changed_at;
END
$$;

REVOKE ALL ON FUNCTION set_quota_limit(text, text, text, text, text, numeric, numeric, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION set_quota_limit(text, text, text, text, text, numeric, numeric, text, text) TO "{{api_user}}";
GRANT SELECT ON quota_limit_changes TO "{{api_user}}";
