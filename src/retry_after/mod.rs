//! `RetryAfterLayer`: honor `429`/`503` guidance and gate endpoints while blocked.

mod gate;
mod layer;

pub use gate::EndpointGate;
pub use layer::{
    default_endpoint, LongWait, RetryAfterLayer, RetryAfterLayerBuilder, RetryAfterPolicy,
};

/// The service made by [`RetryAfterLayer`].
pub type RetryAfter<S> = crate::retry::Retrying<S, RetryAfterPolicy>;
