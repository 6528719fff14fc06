//! A scripted tonic Greeter server on loopback, a channel to it, and a service that
//! records when each attempt was sent.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Uri};
use tokio::time::Instant;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tower::util::{BoxCloneService, MapRequest, MapRequestLayer};
use tower::{Layer, Service};
use tower_throttle::{ReplayBody, TonicBody, TonicBodyLayer};

use super::helloworld::{GreeterServer, HelloReply, HelloRequest};

/// A method the Greeter does not have: its server answers `UNIMPLEMENTED`.
pub const SAY_GOODBYE: &str = "/helloworld.Greeter/SayGoodbye";

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What the server answers one call with.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `Hello {name}!`, with these metadata.
    Greet(Vec<(&'static str, &'static str)>),
    /// An error status with its message and metadata.
    Refuse(Code, &'static str, Vec<(&'static str, &'static str)>),
}

pub fn greet(metadata: &[(&'static str, &'static str)]) -> Reply {
    Reply::Greet(metadata.to_vec())
}

pub fn refuse(
    code: Code,
    message: &'static str,
    metadata: &[(&'static str, &'static str)],
) -> Reply {
    Reply::Refuse(code, message, metadata.to_vec())
}

fn metadata(fields: &[(&'static str, &'static str)]) -> MetadataMap {
    let mut headers = HeaderMap::new();
    for (k, v) in fields {
        headers.append(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    MetadataMap::from_headers(headers)
}

impl Reply {
    fn answer(
        &self,
        req: tonic::Request<HelloRequest>,
    ) -> Result<tonic::Response<HelloReply>, Status> {
        match self {
            Reply::Greet(fields) => {
                let message = format!("Hello {}!", req.into_inner().name);
                let mut res = tonic::Response::new(HelloReply { message });
                *res.metadata_mut() = metadata(fields);
                Ok(res)
            }
            Reply::Refuse(code, message, fields) => {
                Err(Status::with_metadata(*code, *message, metadata(fields)))
            }
        }
    }
}

pub struct Server {
    pub addr: SocketAddr,
    calls: Arc<AtomicUsize>,
}

impl Server {
    /// Calls answered so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A Greeter server answering the `n`th `SayHello` with `script[n]`, then `then`.
pub async fn serve(script: Vec<Reply>, then: Reply) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&calls);
    let greeter = GreeterServer::new(move |req| {
        let n = count.fetch_add(1, Ordering::SeqCst);
        script.get(n).unwrap_or(&then).answer(req)
    });
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(greeter)
            .serve_with_incoming(incoming),
    );
    Server { addr, calls }
}

pub async fn connect(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A loopback address nothing listens on.
pub async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// When each attempt was sent, and to which path.
#[derive(Clone, Default)]
pub struct Sent(Arc<Mutex<Vec<(Instant, String)>>>);

impl Sent {
    /// Send instants of the attempts to `path`, since the first attempt to any path.
    pub fn times(&self, path: &str) -> Vec<Duration> {
        let sent = self.0.lock().unwrap();
        let Some(&(first, _)) = sent.first() else {
            return Vec::new();
        };
        sent.iter()
            .filter(|(_, p)| p == path)
            .map(|(at, _)| *at - first)
            .collect()
    }

    /// Records the instant of each request it passes on (in `call`, before any IO).
    fn recorder(&self) -> impl FnMut(Request<ReplayBody>) -> Request<ReplayBody> + Clone {
        let sent = self.clone();
        move |req| {
            let path = req.uri().path().to_owned();
            sent.0.lock().unwrap().push((Instant::now(), path));
            req
        }
    }

    /// A layer recording every request it passes on.
    pub fn layer(
        &self,
    ) -> MapRequestLayer<impl FnMut(Request<ReplayBody>) -> Request<ReplayBody> + Clone> {
        MapRequestLayer::new(self.recorder())
    }

    /// The recorder over a channel, with the one line the retrying layers need.
    pub fn over(
        &self,
        channel: Channel,
    ) -> MapRequest<
        TonicBody<Channel>,
        impl FnMut(Request<ReplayBody>) -> Request<ReplayBody> + Clone,
    > {
        MapRequest::new(TonicBodyLayer.layer(channel), self.recorder())
    }
}

/// A client stack with its type erased, so that tests can clone and share one.
pub type Svc =
    BoxCloneService<Request<tonic::body::Body>, Response<tonic::body::Body>, tower_throttle::Error>;

pub fn boxed<S>(svc: S) -> Svc
where
    S: Service<
            Request<tonic::body::Body>,
            Response = Response<tonic::body::Body>,
            Error = tower_throttle::Error,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    BoxCloneService::new(svc)
}

/// Calls a method the Greeter does not have, through `svc`.
pub async fn say_goodbye(svc: Svc, origin: Uri) -> Result<tonic::Response<HelloReply>, Status> {
    let mut grpc = tonic::client::Grpc::with_origin(svc, origin);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let request = tonic::Request::new(HelloRequest { name: "x".into() });
    let path = http::uri::PathAndQuery::from_static(SAY_GOODBYE);
    grpc.unary(request, path, tonic_prost::ProstCodec::default())
        .await
}
