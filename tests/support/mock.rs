//! A scripted in-process HTTP service that records when each request arrived.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower_throttle::BoxError;

/// What the mock answers.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16, Vec<(&'static str, String)>),
    /// A status, headers and this body.
    Body(u16, Vec<(&'static str, String)>, Bytes),
    Fail(io::ErrorKind),
    Message(&'static str),
}

/// A plain status.
pub fn status(code: u16) -> Reply {
    Reply::Status(code, Vec::new())
}

/// A status with headers.
pub fn with(code: u16, headers: &[(&'static str, &str)]) -> Reply {
    Reply::Status(
        code,
        headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
    )
}

/// A `200` with a JSON body (`content-type: application/json`).
pub fn json(body: &str) -> Reply {
    Reply::Body(
        200,
        vec![("content-type", "application/json".to_owned())],
        Bytes::copy_from_slice(body.as_bytes()),
    )
}

/// One request as the mock saw it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub at: Duration,
    pub method: Method,
    pub path: String,
    pub body: Bytes,
    pub idempotency_key: Option<String>,
}

#[derive(Clone)]
pub struct Mock {
    pub hits: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    fallback: Reply,
    start: Instant,
}

impl Mock {
    /// Answers with `script` in order, then `200` forever.
    pub fn new(script: Vec<Reply>) -> Self {
        Self::with_fallback(script, status(200))
    }

    /// Answers with `script` in order, then `fallback` forever.
    pub fn with_fallback(script: Vec<Reply>, fallback: Reply) -> Self {
        Mock {
            hits: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
            fallback,
            start: Instant::now(),
        }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Arrival times of every request, since the mock was made.
    pub fn times(&self) -> Vec<Duration> {
        self.hits().iter().map(|h| h.at).collect()
    }

    /// The service, generic over the request body. Its error is a concrete `io::Error`
    /// (like a real client's), not a `BoxError`.
    pub fn service<B>(&self) -> BoxCloneService<Request<B>, Response<Full<Bytes>>, io::Error>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let mock = self.clone();
        BoxCloneService::new(tower::service_fn(move |req: Request<B>| {
            let mock = mock.clone();
            async move {
                let at = mock.start.elapsed();
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map_err(|e| io::Error::other(e.into()))?
                    .to_bytes();
                mock.hits.lock().unwrap().push(Hit {
                    at,
                    method: parts.method.clone(),
                    path: parts.uri.path().to_owned(),
                    body,
                    idempotency_key: parts
                        .headers
                        .get("idempotency-key")
                        .map(|v| v.to_str().unwrap().to_owned()),
                });
                let reply = mock
                    .script
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or_else(|| mock.fallback.clone());
                let (reply, body) = match reply {
                    Reply::Status(code, headers) => {
                        (Reply::Status(code, headers), Bytes::from("reply"))
                    }
                    Reply::Body(code, headers, body) => (Reply::Status(code, headers), body),
                    other => (other, Bytes::new()),
                };
                match reply {
                    Reply::Status(code, headers) | Reply::Body(code, headers, _) => {
                        let mut res = Response::new(Full::new(body));
                        *res.status_mut() = StatusCode::from_u16(code).unwrap();
                        for (k, v) in headers {
                            res.headers_mut().insert(k, v.parse().unwrap());
                        }
                        Ok(res)
                    }
                    Reply::Fail(kind) => Err(io::Error::from(kind)),
                    Reply::Message(m) => Err(io::Error::other(m)),
                }
            }
        }))
    }
}

/// `Infallible` helper for tests that need it.
pub type Never = Infallible;

/// Arrival time of each attempt, from the delays between them. tokio's timers have a
/// resolution of 1 ms and round a deadline up, so each wait ends on the next whole ms:
/// never earlier than asked.
pub fn cumulative(delays: &[Duration]) -> Vec<Duration> {
    let mut at = Duration::ZERO;
    let mut out = vec![at];
    for d in delays {
        let ms = d.as_nanos().div_ceil(1_000_000) as u64;
        at += Duration::from_millis(ms);
        out.push(at);
    }
    out
}

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}
