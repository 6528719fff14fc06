//! Attacks of issue 11 (flood): filled in by its change.
