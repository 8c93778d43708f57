-- Frequency caps per phone across campaigns ([limits] per_contact, core/caps.py,
-- daemon/db/caps_store.py) and the messaging-limit window's backfill from history.
-- A capped claim is one transaction: take the candidates (row locks), lock their phones,
-- read the phones' earlier messages, then claim those under the caps and hold back the rest.

-- name: caps_candidates
-- The claim_contacts selection without the update: $1 campaign, $2 how many, ($5, $3) the
-- cursor, $4 now (send windows). Row-locked until the transaction ends.
-- include: claimable_contacts columns=id,phone campaign=$1 limit=$2 after_at=$5 after_id=$3 now=$4
;

-- name: caps_lock_phones
-- One transaction-scoped advisory lock per phone ($1), taken in one order by every daemon
-- (no deadlock): a daemon claiming the same phone for another campaign waits until this
-- claim commits, then reads it in caps_history. Two-key locks (19004, hash): a key space of
-- their own, apart from the single-key limit_lock. A hash collision only serialises more.
SELECT count(pg_advisory_xact_lock(19004, h))
FROM (SELECT DISTINCT hashtext(p) AS h FROM unnest($1::text[]) AS p ORDER BY 1) AS s;

-- name: caps_history
-- The earlier messages of phones $1 in other campaigns than $2, claimed after $3, in the
-- states a message went out or is going, of campaigns whose template category is one of $4
-- (an unknown category counts as MARKETING: core.caps.UNKNOWN_CATEGORY_COUNTS_AS). Probes
-- contacts_phone_claimed (migration 0014) by phone, whatever the number of campaigns; the
-- category is looked up per row found: joined, the planner misjudged the category filter and
-- walked every campaign through contacts_campaign_phone_live (229 ms per 500-phone claim
-- over 500 campaigns, notes/caps.md).
SELECT h.phone, h.claimed_at
FROM contacts h
WHERE h.phone = ANY($1::text[])
  AND h.state IN ('in_progress', 'sent', 'delivered', 'read', 'delivery_failed')
  AND h.claimed_at > $3
  AND h.campaign_id <> $2
  AND (SELECT upper(coalesce(nullif(k.template_category, ''), 'MARKETING'))
       FROM campaigns k WHERE k.id = h.campaign_id) = ANY($4::text[]);

-- name: claim_contact_ids
-- claim_contacts' update for the candidates $1 (locked by this transaction) that may go.
UPDATE contacts
SET state = 'in_progress',
    attempts = attempts + 1,
    claimed_by = $2,
    claimed_at = now(),
    lease_until = now() + make_interval(secs => $3),
    updated_at = now()
WHERE id = ANY($1::bigint[]) AND state IN ('initial', 'retry_scheduled')
RETURNING id, campaign_id, phone, params, attempts, attempts - unknown_attempts AS counted_attempts,
          not_before;

-- name: caps_defer
-- Capped contacts wait: not_before moves to when the cap frees them ($1 ids, $2 times), so
-- the windowed claim (contacts_claimable_window) passes them by until then.
UPDATE contacts AS c
SET not_before = w.at, updated_at = now()
FROM unnest($1::bigint[], $2::timestamptz[]) AS w(id, at)
WHERE c.id = w.id AND c.state IN ('initial', 'retry_scheduled');

-- name: caps_fail
-- Capped contacts whose cap frees them only after their campaign's finish-by: Sending failed,
-- reason frequency_cap ($1 ids, $2 titles).
UPDATE contacts AS c
SET state = 'sending_failed', error_code = NULL, error_title = w.title, next_attempt_at = NULL,
    failed_at = now(), updated_at = now()
FROM unnest($1::bigint[], $2::text[]) AS w(id, title)
WHERE c.id = w.id AND c.state IN ('initial', 'retry_scheduled');

-- name: limit_window_backfill
-- The messaging limit counts every unique recipient of the last rolling 24 h, also those
-- sent before the limit was configured (or by a daemon without it): the phones of contacts
-- claimed in the last 24 h whose message went out or is going join recipient_window (run
-- under limit_lock at the daemon's first limited claim and every 300 s).
INSERT INTO recipient_window AS w (phone, last_sent_at)
SELECT phone, max(claimed_at) FROM contacts
WHERE claimed_at > now() - interval '24 hours'
  AND state IN ('in_progress', 'sent', 'delivered', 'read', 'delivery_failed')
GROUP BY phone
ON CONFLICT (phone) DO UPDATE SET last_sent_at = EXCLUDED.last_sent_at
WHERE w.last_sent_at < EXCLUDED.last_sent_at;
