-- wa-sender schema, version 15: cost (issue 19): a campaign's rate card and budget.
-- Compatible with PostgreSQL 15 and later.

-- `campaign create|update --budget AMOUNT [--budget-currency EUR] --rate-card FILE`: the most
-- the campaign may cost (billed messages plus messages in flight, priced by its rates); the
-- daemon pauses it (reason 'budget: ...') before the message that would pass it. rate_card:
-- the file the rates were loaded from, shown by `campaign status`.
ALTER TABLE campaigns
    ADD COLUMN budget numeric CHECK (budget >= 0),
    ADD COLUMN budget_currency text,
    ADD COLUMN rate_card text;

-- The campaign's rate card, one price per recipient country and pricing category, as loaded
-- (a calling-code row of the file expanded to each region of that code; an ISO row wins).
-- region '*': every country the card does not name.
CREATE TABLE campaign_rates (
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    region      text NOT NULL,
    category    text NOT NULL,
    price       numeric NOT NULL CHECK (price >= 0),
    currency    text NOT NULL,
    source_line integer,
    PRIMARY KEY (campaign_id, region, category)
);

-- The budget check's running estimate (engine.budget), written under the campaign's budget
-- lock: `checked` the committed cost at the last full count (at checked_at), `claimed` the
-- prices of the contacts kept by claims since. A claim whose worst case still fits under
-- checked + claimed skips the full count (which reads every sent contact and status).
CREATE TABLE campaign_budget_spend (
    campaign_id bigint PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
    checked     numeric NOT NULL,
    claimed     numeric NOT NULL DEFAULT 0,
    checked_at  timestamptz NOT NULL DEFAULT now()
);
