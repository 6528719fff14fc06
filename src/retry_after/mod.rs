//! `RetryAfterLayer`: honor `429`/`503` guidance and gRPC pushback, and gate endpoints
//! while blocked.

mod builder;
mod gate;
mod layer;

pub use builder::{RetryAfterConfigError, RetryAfterLayerBuilder};
pub use gate::EndpointGate;
pub use layer::{default_endpoint, LongWait, RetryAfterLayer};

/// The service made by [`RetryAfterLayer`].
pub type RetryAfter<S> = crate::client::Retrying<S, layer::RetryAfterPolicy>;
