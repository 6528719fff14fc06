//! The state word: how one limit's state is held in a `u64`, and the bounds that keep
//! every flag clear of real values. The only place these bits are defined.
//!
//! ```text
//!  63       62       61 .. 0
//! BLOCKED  LOCKED   theoretical arrival time (TAT), ns on the caller's clock
//! ```
//!
//! - **TAT** (bits 0–61): the GCRA theoretical arrival time. A key without state reads 0,
//!   and any TAT `<= now` decides like no state at all, so a store may forget a key once
//!   its TAT has passed ([`is_idle`]).
//! - **[`BLOCKED`]** (bit 63): the key serves a block period (set by [`crate::engine::gcra`]
//!   when a refusal starts one; a refusal during the block does not extend it). Part of
//!   the stored state: every store keeps it (Redis stores it as the sign of its value).
//! - **[`LOCKED`]** (bit 62): transient, in-memory store only: a multi-limit decision
//!   holds the key (see `store::memory::many`). Never stored elsewhere, never seen by
//!   [`crate::engine::gcra`].
//! - **[`MOVED`]** (all ones): in-memory store only: the slot's table was replaced (see
//!   `store::memory::table`). Never a real state: a real one is below 2^63 | 2^62 | 2^62.
//!
//! **Bounds.** Timestamps are capped at [`MAX_NOW`] (2^61 ns, 73 years of uptime); a
//! quota's `burst × interval` is at most [`MAX_LIMIT_NS`] (2^60 ns, checked by
//! [`Quota::with_burst`](crate::Quota::with_burst)); a block period at most
//! [`MAX_PERIOD`](crate::engine::quota::MAX_PERIOD) (366 days). So a TAT — a timestamp
//! plus a limit plus a block — stays below 2^62, clear of both flags.

/// Flag: the key is serving a block period.
pub(crate) const BLOCKED: u64 = 1 << 63;

/// Flag (in-memory store): a multi-limit decision holds the key.
pub(crate) const LOCKED: u64 = 1 << 62;

/// In-memory store: the slot's table was replaced; look in the current table.
pub(crate) const MOVED: u64 = u64::MAX;

/// Timestamps are capped here (2^61 ns).
pub(crate) const MAX_NOW: u64 = 1 << 61;

/// The largest `burst × interval` of a quota (2^60 ns, about 36 years).
pub(crate) const MAX_LIMIT_NS: u64 = 1 << 60;

/// The TAT of a stored state (without the flags a store keeps).
#[inline(always)]
pub(crate) fn tat_of(stored: u64) -> u64 {
    stored & !BLOCKED
}

/// Whether a stored state carries no information at `now`: forgetting the key changes no
/// decision.
#[inline(always)]
pub(crate) fn is_idle(stored: u64, now: u64) -> bool {
    tat_of(stored) <= now
}

const _: () = assert!(MAX_NOW + MAX_LIMIT_NS + (366 * 24 * 3600 * 1_000_000_000) < LOCKED);
