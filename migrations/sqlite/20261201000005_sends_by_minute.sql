-- Requests in a window, counted without reading every request in it. A claim needs "attempts
-- sent after `start`" for its account and for the app, under the write lock. Counted over the
-- attempts indexes that costs one index entry per request in the window: with Enterprise
-- limits, or the dispatch benchmark's lifted ones, 10,000-20,000 entries and 200 µs of each
-- claim's ~720 µs (measured, the store alone). These tables keep the same count in minutes, so
-- a claim reads one row per minute of the window and, from the attempts themselves, only the
-- part of the first minute that is after `start` (see `SENT_AFTER` in store/sqlite/ledger.rs).
--
-- Kept by the trigger below in the statement that inserts the attempt, so they can never
-- disagree with the ledger. Attempts are never deleted and their sent_at never changes.
create table account_sends (
    account_id integer not null references accounts(id),
    -- sent_at / 60000: the minute since the epoch (sent_at is never negative).
    minute integer not null,
    n integer not null check (n > 0),
    primary key (account_id, minute)
) without rowid;

create table app_sends (
    minute integer primary key,
    n integer not null check (n > 0)
);

insert into account_sends (account_id, minute, n)
select account_id, sent_at / 60000, count(*) from attempts group by 1, 2;
insert into app_sends (minute, n)
select sent_at / 60000, count(*) from attempts group by 1;

create trigger attempts_count_send after insert on attempts
begin
    insert into account_sends (account_id, minute, n) values (new.account_id, new.sent_at / 60000, 1)
    on conflict (account_id, minute) do update set n = n + 1;
    insert into app_sends (minute, n) values (new.sent_at / 60000, 1)
    on conflict (minute) do update set n = n + 1;
end;
