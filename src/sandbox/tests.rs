//! Sandbox tests.
