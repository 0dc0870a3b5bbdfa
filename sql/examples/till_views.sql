-- ageseg on a chain's own till database (PostgreSQL): views that show the till's tables
-- under the names, columns and types the job reads, in a schema of their own, and a role
-- that may only read them. Run once as the till database's owner, after editing the names
-- on the right-hand side (and the shop's time zone) to fit your till; then point the job
-- at it with --source-url postgresql+psycopg://ageseg_ro@till-replica/pos --source-schema till
-- and check it with `ageseg check-source`.
--
-- The till here, schema "pos", is a typical one:
--   pos.branch       (branch_no int, branch_name text)
--   pos.operator     (operator_no int, branch_no int, display_name text)   -- not needed
--   pos.article      (article_no bigint, description text, department text,
--                     min_age smallint)                  -- 18 for alcohol, NULL otherwise
--   pos.sale         (sale_id bigint, branch_no int, operator_no int,
--                     sold_at timestamptz, age_verified char(1))  -- 'Y', 'N' or NULL
--   pos.sale_item    (sale_id bigint, item_seq int, article_no bigint, qty int,
--                     line_total_cents bigint)                    -- money in cents
--   pos.camera_frame (frame_id bigint, sale_id bigint, file_path text,
--                     captured_at timestamptz)

CREATE SCHEMA IF NOT EXISTS till;

CREATE OR REPLACE VIEW till.stores AS
SELECT branch_no AS store_id, branch_name AS name
FROM pos.branch;

CREATE OR REPLACE VIEW till.products AS
SELECT article_no AS product_id, description AS name, department AS category,
       coalesce(min_age, 0) >= 18 AS age_restricted
FROM pos.article;

-- ts and taken_at are local shop time without a time zone: a day is the shop's day.
CREATE OR REPLACE VIEW till.receipts AS
SELECT sale_id AS receipt_id, branch_no AS store_id, operator_no AS cashier_id,
       sold_at AT TIME ZONE 'Europe/London' AS ts,
       CASE age_verified WHEN 'Y' THEN true WHEN 'N' THEN false END AS id_checked
FROM pos.sale;

-- amount is the line's money in currency units (numeric, exact: cents / 100).
CREATE OR REPLACE VIEW till.receipt_lines AS
SELECT sale_id AS receipt_id, article_no AS product_id, qty AS quantity,
       line_total_cents / 100.0 AS amount
FROM pos.sale_item;

-- path is relative to the job's --photo-root.
CREATE OR REPLACE VIEW till.checkout_photos AS
SELECT frame_id AS photo_id, sale_id AS receipt_id, file_path AS path,
       captured_at AT TIME ZONE 'Europe/London' AS taken_at
FROM pos.camera_frame;

-- The job selects one day with ts >= day AND ts < day + 1: on a large till, index the
-- expressions the views compute, so that the day is found by index, not by a scan.
CREATE INDEX IF NOT EXISTS sale_local_day ON pos.sale ((sold_at AT TIME ZONE 'Europe/London'));
CREATE INDEX IF NOT EXISTS frame_local_day
    ON pos.camera_frame ((captured_at AT TIME ZONE 'Europe/London'));

-- A role that can read the views and nothing else (not even the pos tables: a view reads
-- them with its owner's rights). Give it a password, or use your site's authentication.
DO $$ BEGIN
    CREATE ROLE ageseg_ro LOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
GRANT USAGE ON SCHEMA till TO ageseg_ro;
GRANT SELECT ON ALL TABLES IN SCHEMA till TO ageseg_ro;
