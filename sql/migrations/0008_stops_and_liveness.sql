-- wa-sender schema, version 8: campaign stops every daemon confirms; what `wa-sender daemons`
-- and /metrics read.
-- Compatible with PostgreSQL 15 and later.

-- Every pause or cancel (an operator's, or the daemon's on a campaign-fatal error) takes the
-- next stop number. A daemon confirms number N (daemons.acked_stop_seq) once it holds nothing
-- of any campaign stopped up to N: none queued, none in flight, every result recorded. The
-- command that stopped the campaign returns when every daemon that could still send has.
CREATE SEQUENCE campaign_stop_seq;
ALTER TABLE campaigns ADD COLUMN stop_seq bigint NOT NULL DEFAULT 0;
CREATE INDEX campaigns_stop_seq ON campaigns (stop_seq) WHERE stop_seq > 0;

ALTER TABLE daemons
    ADD COLUMN acked_stop_seq bigint NOT NULL DEFAULT 0,
    -- How long after its last heartbeat this daemon may still have a message leave: it stops
    -- starting sends once its heartbeat is older than its fence, and a send lasts at most the
    -- request timeout. A daemon silent for longer can send nothing, confirmed or not.
    ADD COLUMN send_bound_s double precision NOT NULL DEFAULT 60,
    ADD COLUMN version text,
    -- {phone_number_id: {"rate": its share of the configured rate, "effective": after the
    -- adaptive slow-down}} and messages accepted since start, as of the last heartbeat.
    ADD COLUMN numbers jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN sent bigint NOT NULL DEFAULT 0;

-- /metrics counts these every few seconds: small partial indexes keep that cheap.
CREATE INDEX status_receipts_orphan ON status_receipts (id) WHERE processing_state = 'orphan';
CREATE INDEX contacts_unknown_outcome ON contacts (campaign_id)
    WHERE outcome_unknown AND state = 'retry_scheduled';
