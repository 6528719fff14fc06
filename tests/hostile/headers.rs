//! Attacks of issue 11 (headers): filled in by its change.
