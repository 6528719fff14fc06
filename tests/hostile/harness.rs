//! What the hostile tests share: a Clerk server on a free loopback port and a raw
//! HTTP/1.1 client that sends the request target byte for byte (no normalization by a
//! client library), from a chosen loopback source address.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tower_throttle::RateLimitHandle;

use crate::clerk;

/// A server running on a loopback port; aborted on drop.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The layer's counters.
    pub handle: RateLimitHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Serves `app` (with `ConnectInfo`) on `127.0.0.1:0`.
    pub async fn start(app: Router, handle: RateLimitHandle) -> Server {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(clerk::serve(listener, app));
        Server { addr, handle, task }
    }

    /// The Clerk development instance on the in-memory store.
    pub async fn clerk() -> Server {
        let (app, handle) = clerk::app(clerk::Instance::Development).unwrap();
        Server::start(app, handle).await
    }

    /// Sends one request from `source` (a 127.0.0.0/8 address) and returns the answer.
    pub async fn send(&self, source: &str, req: &Raw<'_>) -> Answer {
        raw_request(self.addr, source, req).await
    }

    /// Sends `n` copies of `req` from `source`; returns how many were answered `status`.
    pub async fn count(&self, n: usize, source: &str, req: &Raw<'_>, status: u16) -> usize {
        let mut hits = 0;
        for _ in 0..n {
            if self.send(source, req).await.status == status {
                hits += 1;
            }
        }
        hits
    }
}

/// A request as it goes on the wire.
#[derive(Debug, Clone, Copy)]
pub struct Raw<'a> {
    /// The method token.
    pub method: &'a str,
    /// The request target, sent as is.
    pub target: &'a str,
    /// Extra header lines (`name`, `value`).
    pub headers: &'a [(&'a str, &'a str)],
}

impl<'a> Raw<'a> {
    /// `method target` with no extra headers.
    pub fn new(method: &'a str, target: &'a str) -> Self {
        Raw {
            method,
            target,
            headers: &[],
        }
    }

    /// The same request with `headers`.
    pub fn headers(self, headers: &'a [(&'a str, &'a str)]) -> Self {
        Raw { headers, ..self }
    }
}

/// What the server answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection from `source`, `Connection: close`, read to EOF.
pub async fn raw_request(addr: SocketAddr, source: &str, req: &Raw<'_>) -> Answer {
    let socket = TcpSocket::new_v4().unwrap();
    let source: IpAddr = source.parse().expect("a source IP");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind the source address");
    let mut stream: TcpStream = socket.connect(addr).await.expect("connect");
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: 0\r\n",
        req.method, req.target
    );
    for (name, value) in req.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    parse_answer(&bytes)
}

fn parse_answer(bytes: &[u8]) -> Answer {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = std::str::from_utf8(&bytes[..split]).expect("an ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = bytes[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = std::str::from_utf8(&data[..eol]).unwrap_or("0");
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

/// The bearer header of API key `key`.
pub fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}
