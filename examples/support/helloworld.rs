//! tonic's canonical `helloworld.Greeter` service, written by hand so that nothing needs
//! `protoc` or a build script: the two prost messages of `helloworld.proto`, and the server
//! and client glue that `tonic-build` would generate for
//!
//! ```proto
//! package helloworld;
//! service Greeter { rpc SayHello (HelloRequest) returns (HelloReply); }
//! message HelloRequest { string name = 1; }
//! message HelloReply { string message = 1; }
//! ```
//!
//! Any gRPC client (grpcurl with that proto, another language's generated stub) speaks to
//! the server; the client speaks to any Greeter server.

#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::{http, Body, BoxFuture, Bytes, GrpcMethod, Service, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

/// `helloworld.HelloRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    /// Who to greet.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `helloworld.HelloReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    /// The greeting.
    #[prost(string, tag = "1")]
    pub message: String,
}

/// The service's name, as gRPC routes it.
pub const SERVICE: &str = "helloworld.Greeter";
/// The one method's path.
pub const SAY_HELLO: &str = "/helloworld.Greeter/SayHello";

/// What the server answers a call with.
pub type Handler =
    Arc<dyn Fn(Request<HelloRequest>) -> Result<Response<HelloReply>, Status> + Send + Sync>;

/// The server side: answers `SayHello` with a handler, anything else `UNIMPLEMENTED`.
#[derive(Clone)]
pub struct GreeterServer {
    handler: Handler,
}

impl GreeterServer {
    /// A server answering with `handler`.
    pub fn new<F>(handler: F) -> Self
    where
        F: Fn(Request<HelloRequest>) -> Result<Response<HelloReply>, Status>
            + Send
            + Sync
            + 'static,
    {
        GreeterServer {
            handler: Arc::new(handler),
        }
    }

    /// A server that answers `Hello {name}!`.
    pub fn greeting() -> Self {
        Self::new(|req| {
            let message = format!("Hello {}!", req.into_inner().name);
            Ok(Response::new(HelloReply { message }))
        })
    }
}

impl NamedService for GreeterServer {
    const NAME: &'static str = SERVICE;
}

impl<B> Service<http::Request<B>> for GreeterServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != SAY_HELLO {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let method = SayHello(Arc::clone(&self.handler));
        Box::pin(async move {
            let mut grpc = Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(method, req).await)
        })
    }
}

struct SayHello(Handler);

impl UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future = BoxFuture<Response<HelloReply>, Status>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        let answer = (self.0)(request);
        Box::pin(async move { answer })
    }
}

/// The client side, over any gRPC transport service (a tonic `Channel`, or a tower stack
/// around one).
#[derive(Debug, Clone)]
pub struct GreeterClient<T> {
    inner: tonic::client::Grpc<T>,
}

impl<T> GreeterClient<T>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    /// A client sending requests with relative URIs (the channel adds its origin).
    pub fn new(inner: T) -> Self {
        GreeterClient {
            inner: tonic::client::Grpc::new(inner),
        }
    }

    /// A client sending absolute URIs under `origin`, so that layers below it see the
    /// authority (the client layers key endpoints by authority and method).
    pub fn with_origin(inner: T, origin: http::Uri) -> Self {
        GreeterClient {
            inner: tonic::client::Grpc::with_origin(inner, origin),
        }
    }

    /// `SayHello`.
    pub async fn say_hello(
        &mut self,
        request: impl tonic::IntoRequest<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unknown(format!("Service was not ready: {}", e.into())))?;
        let path = http::uri::PathAndQuery::from_static(SAY_HELLO);
        let mut request = request.into_request();
        request
            .extensions_mut()
            .insert(GrpcMethod::new(SERVICE, "SayHello"));
        self.inner
            .unary(request, path, tonic_prost::ProstCodec::default())
            .await
    }
}
