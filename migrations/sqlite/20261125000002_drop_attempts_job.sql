-- No query reads attempts by job (export and verify read jobs; the audit log joins attempts to
-- jobs by the jobs' key), and no job is ever deleted, so this index only cost every claim an
-- insert into one more b-tree (measured in the dispatch benchmark).
drop index if exists attempts_job;
