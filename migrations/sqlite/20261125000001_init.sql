-- followq's schema: the accounts it works for, what was imported, the queue (jobs) and the
-- rate-limit ledger (attempts). Times are integer milliseconds since the Unix epoch, UTC.

create table accounts (
    id integer primary key,
    name text not null unique,
    created_at integer not null,
    -- No request for this account before this time (a 429 reset, code 161, a code 226 cool-down).
    paused_until integer not null default 0,
    pause_reason text not null default '',
    -- Non-empty when X said this account cannot go on (locked, suspended, bad credentials).
    -- Cleared by `followq accounts check` once the credentials verify again.
    stopped_reason text not null default '',
    -- Multiplies the spacing between this account's requests; doubled after each code 226.
    pace_factor real not null default 1.0 check (pace_factor >= 1.0)
);

create table imports (
    id integer primary key,
    -- The file as given ('-' for stdin, the path for an inbox file).
    source text not null,
    -- sha256 of the bytes: an inbox file is ingested once per content, whatever its name.
    content_hash text not null default '',
    started_at integer not null,
    -- 0 until the import committed its last batch: an unfinished import is simply run again.
    finished_at integer not null default 0,
    rows_read integer not null default 0,
    added integer not null default 0,
    duplicates integer not null default 0,
    rejected integer not null default 0
);
-- The inbox asks "was this content already ingested?" for every file it sees.
create index imports_hash on imports(content_hash) where finished_at > 0;

create table jobs (
    id integer primary key,
    account_id integer not null references accounts(id),
    target_kind text not null check (target_kind in ('screen_name', 'user_id')),
    -- What is sent: the screen name as first imported, or the decimal id. Screen names match
    -- case-insensitively on X, so the dedupe key below compares them without case.
    target text not null,
    -- follow=true: turn on notifications for the target.
    notify integer not null default 0 check (notify in (0, 1)),
    state text not null default 'queued' check (state in ('queued', 'in_flight', 'done')),
    outcome text check (outcome in ('followed', 'requested', 'already_following', 'blocked',
                                    'suspended', 'not_found', 'refused', 'failed')),
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
-- One index for two hot paths: the dispatcher's "an account's next queued job, in import order"
-- (account_id, 'queued', null, then id order) and status's counts by account, state and outcome,
-- read from the index alone. (Two separate indexes cost import a third more time.)
create index jobs_by_state on jobs(account_id, state, outcome, id);
-- Start-up recovery finds the jobs a crash left in flight: a handful at most, so the index is
-- tiny, and without it the lookup reads the whole table.
create index jobs_in_flight on jobs(id) where state = 'in_flight';

-- Jobs by account, state and outcome ('' while unfinished): what status reads, in O(accounts)
-- rather than a scan of every job. Every change of a job's state or outcome keeps it by the
-- trigger below; the one place that inserts jobs (the import) adds its rows in the same
-- transaction (an insert trigger would cost a large import a third more time).
create table job_counts (
    account_id integer not null references accounts(id),
    state text not null,
    outcome text not null default '',
    n integer not null default 0 check (n >= 0),
    primary key (account_id, state, outcome)
) without rowid;

create trigger jobs_count_transition after update of state, outcome on jobs
when old.state is not new.state or old.outcome is not new.outcome
begin
    update job_counts set n = n - 1
    where account_id = old.account_id and state = old.state and outcome = coalesce(old.outcome, '');
    insert into job_counts (account_id, state, outcome, n)
    values (new.account_id, new.state, coalesce(new.outcome, ''), 1)
    on conflict (account_id, state, outcome) do update set n = n + 1;
end;

create table attempts (
    id integer primary key,
    job_id integer not null references jobs(id),
    account_id integer not null references accounts(id),
    -- Written and committed before the request goes out: the ledger counts it whatever happens next.
    sent_at integer not null,
    -- Null while the request is out. A crash leaves it null; start-up marks it 'unknown'.
    finished_at integer,
    result text check (result in ('followed', 'requested', 'already_following', 'blocked',
                                  'suspended', 'not_found', 'refused', 'rate_limited',
                                  'follow_limit', 'automated', 'account_stopped', 'app_stopped',
                                  'clock_skew', 'transient', 'unknown')),
    http_status integer,
    error_code integer,
    message text not null default '',
    -- The raw body of any answer that fits no known shape, kept whole.
    body text not null default '',
    rl_limit integer,
    rl_remaining integer,
    rl_reset integer
);
-- "Requests in the window" per account and for the app: range counts on sent_at.
create index attempts_account_sent on attempts(account_id, sent_at);
create index attempts_sent on attempts(sent_at);
-- Start-up finds attempts left without an outcome.
create index attempts_open on attempts(id) where finished_at is null;
-- export and verify read a job's attempts.
create index attempts_job on attempts(job_id);
