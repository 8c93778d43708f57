-- wa-sender schema, version 7: contacts in and out (issue 18).
-- Compatible with PostgreSQL 15 and later.

-- What phonenumbers tells of a valid number at import, for the planning rules: its region
-- (ISO 3166 alpha-2) and its IANA time zone when the number has exactly one (NULL when its
-- area spans several). IF NOT EXISTS: the planning migration adds the same two columns.
ALTER TABLE contacts
    ADD COLUMN IF NOT EXISTS region text,
    ADD COLUMN IF NOT EXISTS time_zone text;

-- The country national numbers of this campaign's imports are read in (`campaign create
-- --default-country`); NULL: the import's --default-country, else import.default_country.
ALTER TABLE campaigns ADD COLUMN IF NOT EXISTS default_country text;
-- The campaign a retargeted campaign took its contacts from (`campaign retarget`).
ALTER TABLE campaigns
    ADD COLUMN IF NOT EXISTS retargeted_from bigint REFERENCES campaigns (id) ON DELETE SET NULL;
