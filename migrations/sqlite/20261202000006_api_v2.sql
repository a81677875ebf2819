-- What API v2 needs kept: each account's own X id (the path of every v2 follow is
-- /2/users/{source_id}/following; GET /2/users/me tells it once), and why X refused the app as a
-- whole (an access level that cannot follow, no credits, a usage cap), so that `status` can say
-- so after the run that met it has ended.

alter table accounts add column x_user_id text not null default '';
alter table accounts add column x_username text not null default '';
-- Which token the id was learnt with (a digest of the access token, never its secret): a config
-- that gives the account another token means another X user, asked again.
alter table accounts add column x_token_digest text not null default '';

-- One row. Non-empty `stopped_reason`: the last run ended because X refused the app; the next
-- run clears it and tries once more (a plan may have changed meanwhile).
create table app_state (
    id integer primary key check (id = 1),
    stopped_reason text not null default '',
    stopped_at integer not null default 0
);
insert into app_state (id) values (1);

-- Screen names resolved to ids (`GET /2/users/by`): a v2 follow names its target by id. One row
-- per name X was asked about, found or not, so a name is resolved once, whatever the restarts.
-- Jobs by screen name are claimed in v2 only once their name is here as 'found'; a name X does
-- not know ends its jobs `not_found`, a suspended one `suspended`, with no follow request.
create table users (
    username text primary key collate nocase,
    user_id text not null default '',
    state text not null check (state = 'found' or state = 'not_found' or state = 'suspended'),
    protected integer not null default 0 check (protected = 0 or protected = 1),
    seen_at integer not null
) without rowid;
