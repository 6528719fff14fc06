//! [`TonicBodyLayer`]: the one line between the client layers and a tonic `Channel`.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::client::BoxError;

/// Hands requests to a tonic transport (a `tonic::transport::Channel`) in the body type
/// it takes, `tonic::body::Body`: the one line a client stack over a `Channel` needs.
///
/// The retrying layers send `Request<ReplayBody>`: they keep the body to send it again,
/// so they cannot send tonic's own one-shot body. A `Channel` takes only
/// `Request<tonic::body::Body>`, and neither crate can teach it another body type: Rust's
/// orphan rule forbids this crate to implement tower's `Service` (a foreign trait) for
/// `Channel` (a foreign type) over `Request<ReplayBody>` (`Request` is foreign too). Nor
/// can the layers choose the inner service's body type themselves without naming it in
/// their service types. So the innermost layer of the stack converts: `TonicBodyLayer`
/// wraps each request body (any body of `Bytes`, a `ReplayBody` in a stack) in a
/// `tonic::body::Body`, copying nothing, and passes responses and errors through
/// unchanged (the channel's transport errors stay what they are, so tonic still maps a
/// server that is down to `UNAVAILABLE`).
///
/// The stack is a `GrpcService<tonic::body::Body>`, so a generated client wraps it
/// (`GreeterClient::new(stack)`, or `with_origin(stack, origin)` so that the layers'
/// endpoint keys carry the server's authority):
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_throttle::backoff::BackoffLayer;
/// use tower_throttle::retry_after::RetryAfterLayer;
/// use tower_throttle::{HeaderMonitorLayer, TonicBodyLayer};
///
/// fn is_grpc_service<T: tonic::client::GrpcService<tonic::body::Body>>(_: &T) {}
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect_lazy();
/// let stack = ServiceBuilder::new()
///     .layer(RetryAfterLayer::builder().build()?)
///     .layer(BackoffLayer::builder().build()?)
///     .layer(HeaderMonitorLayer::new())
///     .layer(TonicBodyLayer)
///     .service(channel);
/// is_grpc_service(&stack);
/// let grpc = tonic::client::Grpc::with_origin(stack, "http://127.0.0.1:50051".parse()?);
/// # drop(grpc);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TonicBodyLayer;

impl<S> Layer<S> for TonicBodyLayer {
    type Service = TonicBody<S>;

    fn layer(&self, inner: S) -> TonicBody<S> {
        TonicBody { inner }
    }
}

/// The service made by [`TonicBodyLayer`]: sends each request to `S` with its body
/// wrapped in a `tonic::body::Body`.
#[derive(Debug, Clone)]
pub struct TonicBody<S> {
    inner: S,
}

impl<S> TonicBody<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for TonicBody<S>
where
    S: Service<Request<tonic::body::Body>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> S::Future {
        self.inner.call(req.map(tonic::body::Body::new))
    }
}
