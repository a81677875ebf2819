-- Why an import failed ('' for one that did not). A file that cannot be imported (not CSV, a
-- malformed header) is recorded as finished with its reason, so the inbox skips that content
-- instead of retrying it every scan, and `status` shows what went wrong.
alter table imports add column error text not null default '';
