-- Follows confirmed, not assumed: X's follows are eventually consistent, and an answer of 200
-- does not always become a follow. A job X answered `followed` (or, in v1.1, `requested`) is
-- checked once it has settled, against what X shows of the account's follows; one still not
-- visible after `verify.retry_after` is sent again once, and if still not visible a settle
-- after that it ends `unconfirmed`, a new outcome.
--
-- jobs gains:
--   confirmed_at  when X was seen showing the follow (null: not yet, or never checked);
--   check_at      when it is to be looked for next (null: nothing to look for);
--   resent        1 once the follow was sent again for not showing (it is sent again once).
--
-- A CHECK cannot be altered in place, so jobs is rebuilt, and attempts with it (its foreign
-- key names jobs), as migration 3 did: each old table renamed out of the way, the new ones
-- filled from the old, the old dropped child first, with the foreign keys on all through. The
-- attempts trigger that keeps the per-minute tallies is created after the copy: the copied
-- attempts are counted already.

alter table attempts rename to attempts_old;
alter table jobs rename to jobs_old;
drop trigger jobs_count_transition;
drop trigger attempts_count_send;
drop index jobs_queued;
drop index jobs_done;
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
                        or outcome = 'refused' or outcome = 'failed' or outcome = 'unconfirmed'),
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
    confirmed_at integer,
    check_at integer,
    resent integer not null default 0 check (resent = 0 or resent = 1),
    unique (account_id, target_kind, target collate nocase),
    check ((state = 'done') = (outcome is not null)),
    -- Only a finished job is looked for.
    check (check_at is null or state = 'done')
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
-- The confirmations due, per account, soonest first; and how many each account has confirmed
-- (`status`), counted from the index alone.
create index jobs_to_check on jobs(account_id, check_at) where check_at is not null;
create index jobs_confirmed on jobs(account_id) where confirmed_at is not null;

create trigger jobs_count_transition after update of state, outcome on jobs
when old.state is not new.state or old.outcome is not new.outcome
begin
    update job_counts set n = n - 1
    where account_id = old.account_id and state = old.state and outcome = coalesce(old.outcome, '');
    insert into job_counts (account_id, state, outcome, n)
    values (new.account_id, new.state, coalesce(new.outcome, ''), 1)
    on conflict (account_id, state, outcome) do update set n = n + 1;
end;

create index attempts_account_sent on attempts(account_id, sent_at);
create index attempts_sent on attempts(sent_at);
create index attempts_open on attempts(id) where finished_at is null;

create trigger attempts_count_send after insert on attempts
begin
    insert into account_sends (account_id, minute, n) values (new.account_id, new.sent_at / 60000, 1)
    on conflict (account_id, minute) do update set n = n + 1;
    insert into app_sends (minute, n) values (new.sent_at / 60000, 1)
    on conflict (minute) do update set n = n + 1;
end;
