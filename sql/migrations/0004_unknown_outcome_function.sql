-- wa-sender schema, version 4: the unknown-outcome rule, written once.
-- Compatible with PostgreSQL 15 and later.

-- The state a contact takes when its attempt's outcome became unknown (lease expired, daemon
-- dead, send cut off at shutdown): expire_leases and expire_own_contacts (sql/queries/
-- sender.sql) both apply it. Called in an UPDATE's SET, so `attempts` and `unknown_attempts`
-- are the row as it was: the expired attempt (number attempts) becomes unknown outcome
-- unknown_attempts + 1 and does not count against max_attempts, so the counted attempts made
-- are attempts - unknown_attempts - 1. Error when they already use up max_attempts
-- (sender.max_attempts lowered meanwhile), or when this is unknown outcome number max_unknown
-- (recovery.max_unknown_outcomes: a contact that kills its daemon every time must not loop
-- forever), or under the error policy; otherwise retry_scheduled.
-- A single-expression SQL function, IMMUTABLE and not STRICT: the planner inlines it into
-- the calling query, which runs as if the CASE were written there (no call per row).
CREATE FUNCTION unknown_outcome_state(
    policy text,
    attempts integer,
    unknown_attempts integer,
    max_attempts integer,
    max_unknown integer
) RETURNS contact_state
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN policy = 'error'
             OR attempts - unknown_attempts - 1 >= max_attempts
             OR unknown_attempts + 1 >= max_unknown
            THEN 'error'::contact_state
        ELSE 'retry_scheduled'::contact_state
    END
$$;
