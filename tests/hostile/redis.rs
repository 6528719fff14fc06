//! Attacks of issue 11 on the Redis store: filled in by its change.
