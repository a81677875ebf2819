-- Rebuilds jobs and attempts (SQLite cannot alter a constraint in place) for two reasons the
-- import benchmark found, measured in the sqlite3 CLI and in followq on 1M rows:
--
-- 1. A CHECK written `x in (a, b, c, ...)` with more than two values makes SQLite build a
--    temporary b-tree of the values for each statement and search it for every row: the checks
--    on jobs.state and jobs.outcome cost a 1M-row import 1.6 s of 5.9. The same checks written
--    as `x = a or x = b or ...` are plain comparisons that stop at the first match (a queued job
--    passes on the first). attempts.result gets the same form: every answer writes it.
-- 2. One index of the queued jobs, (account_id, id) where state = 'queued', replaces
--    (account_id, state, outcome, id): the dispatcher's "an account's next queued job, in
--    import order" is all that reads it now (status reads job_counts), its entries are smaller,
--    and a job leaves it when it is claimed. `verify` and `requeue` read finished jobs by
--    account through a second one, where state = 'done', which an import never writes to.
--
-- The order keeps the foreign keys on all through: each old table is renamed out of the way
-- (which points attempts_old's reference at jobs_old), the new tables are filled from the old,
-- and the old ones are dropped child first, so no row ever references a dropped table.

alter table attempts rename to attempts_old;
alter table jobs rename to jobs_old;
drop trigger jobs_count_transition;
drop index jobs_by_state;
drop index jobs_in_flight;
drop index attempts_account_sent;
drop index attempts_sent;
drop index attempts_open;

create table jobs (
    id integer primary key,
    account_id integer not null references accounts(id),
    target_kind text not null check (target_kind = 'screen_name' or target_kind = 'user_id'),
    -- What is sent: the screen name as first imported, or the decimal id. Screen names match
    -- case-insensitively on X, so the dedupe key below compares them without case.
    target text not null,
    -- follow=true: turn on notifications for the target.
    notify integer not null default 0 check (notify = 0 or notify = 1),
    state text not null default 'queued' check (state = 'queued' or state = 'in_flight' or state = 'done'),
    outcome text check (outcome = 'followed' or outcome = 'requested' or outcome = 'already_following'
                        or outcome = 'blocked' or outcome = 'suspended' or outcome = 'not_found'
                        or outcome = 'refused' or outcome = 'failed'),
    -- Backoff after a transient failure: not sent again before this time.
    not_before integer not null default 0,
    -- Requests sent for this job, and how many of them failed transiently (bounded by retry.max_attempts).
    attempts integer not null default 0,
    failures integer not null default 0,
    -- The attempt in flight; the outcome is written only where this still matches (two-phase record).
    attempt_id integer,
    last_status integer,
    last_code integer,
    last_message text not null default '',
    import_id integer references imports(id),
    created_at integer not null,
    finished_at integer,
    unique (account_id, target_kind, target collate nocase),
    check ((state = 'done') = (outcome is not null))
);
insert into jobs (id, account_id, target_kind, target, notify, state, outcome, not_before, attempts,
                  failures, attempt_id, last_status, last_code, last_message, import_id, created_at,
                  finished_at)
select id, account_id, target_kind, target, notify, state, outcome, not_before, attempts,
       failures, attempt_id, last_status, last_code, last_message, import_id, created_at,
       finished_at
  from jobs_old;

create table attempts (
    id integer primary key,
    job_id integer not null references jobs(id),
    account_id integer not null references accounts(id),
    -- Written and committed before the request goes out: the ledger counts it whatever happens next.
    sent_at integer not null,
    -- Null while the request is out. A crash leaves it null; start-up marks it 'unknown'.
    finished_at integer,
    result text check (result = 'followed' or result = 'requested' or result = 'already_following'
                       or result = 'blocked' or result = 'suspended' or result = 'not_found'
                       or result = 'refused' or result = 'rate_limited' or result = 'follow_limit'
                       or result = 'automated' or result = 'account_stopped' or result = 'app_stopped'
                       or result = 'clock_skew' or result = 'transient' or result = 'unknown'),
    http_status integer,
    error_code integer,
    message text not null default '',
    -- The raw body of any answer that fits no known shape, kept whole.
    body text not null default '',
    rl_limit integer,
    rl_remaining integer,
    rl_reset integer
);
insert into attempts (id, job_id, account_id, sent_at, finished_at, result, http_status, error_code,
                      message, body, rl_limit, rl_remaining, rl_reset)
select id, job_id, account_id, sent_at, finished_at, result, http_status, error_code,
       message, body, rl_limit, rl_remaining, rl_reset
  from attempts_old;

drop table attempts_old;
drop table jobs_old;

-- The dispatcher's "an account's next queued job, in import order".
create index jobs_queued on jobs(account_id, id) where state = 'queued';
-- `verify` and `requeue`: an account's finished jobs.
create index jobs_done on jobs(account_id, id) where state = 'done';
-- Start-up recovery finds the jobs a crash left in flight: a handful at most.
create index jobs_in_flight on jobs(id) where state = 'in_flight';

create trigger jobs_count_transition after update of state, outcome on jobs
when old.state is not new.state or old.outcome is not new.outcome
begin
    update job_counts set n = n - 1
    where account_id = old.account_id and state = old.state and outcome = coalesce(old.outcome, '');
    insert into job_counts (account_id, state, outcome, n)
    values (new.account_id, new.state, coalesce(new.outcome, ''), 1)
    on conflict (account_id, state, outcome) do update set n = n + 1;
end;

-- "Requests in the window" per account and for the app: range counts on sent_at.
create index attempts_account_sent on attempts(account_id, sent_at);
create index attempts_sent on attempts(sent_at);
-- Start-up finds attempts left without an outcome.
create index attempts_open on attempts(id) where finished_at is null;
