//! The engine: quotas, the GCRA decision, the clock and the stores. Plain Rust, no tower
//! and no HTTP: everything above it (rules, headers, the layers) is built on these.

pub mod clock;
pub mod gcra;
pub mod quota;
mod state;
pub mod store;
