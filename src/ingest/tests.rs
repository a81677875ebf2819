//! Import tests on real SQLite files.
