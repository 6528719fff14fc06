#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! tower-throttle (work in progress)

pub mod clock;
pub mod gcra;
pub mod quota;
pub mod store;

pub use quota::{Quota, QuotaError};
