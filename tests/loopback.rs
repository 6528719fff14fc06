//! The Clerk server on a real loopback socket, driven by a real HTTP client (hyper-util),
//! with two client IPs (127.0.0.2 and 127.0.0.3 are loopback addresses on Linux).

#[path = "../examples/support/clerk.rs"]
mod clerk;

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

fn client_from(source: &str) -> Client<HttpConnector, Empty<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(source.parse::<IpAddr>().unwrap()));
    Client::builder(TokioExecutor::new()).build(connector)
}

#[tokio::test]
async fn real_server_real_client_per_ip_limits() {
    let (app, handle) = clerk::app(clerk::Instance::Development).unwrap();
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(clerk::serve(listener, app));

    let send = |client: Client<HttpConnector, Empty<Bytes>>, method: Method, path: String| async move {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", "Bearer sk_test_loopback")
            .body(Empty::new())
            .unwrap();
        let res = client.request(req).await.unwrap();
        let status = res.status();
        let retry_after = res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, retry_after, body)
    };

    // The 5 per 10 s sign-in limit refills one request every 2 s, far longer than this
    // burst takes, so the counts are exact.
    let a = client_from("127.0.0.2");
    let b = client_from("127.0.0.3");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(send(a.clone(), Method::POST, format!("{base}/v1/sign_ins")).await);
    }
    assert!(statuses[..5].iter().all(|(s, _, _)| *s == StatusCode::OK));
    let (status, retry_after, body) = &statuses[5];
    assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after.as_deref(), Some("2"));
    let problem: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(problem["rule"], "sign_in");
    // The second client IP has its own bucket.
    let (status, _, body) = send(b.clone(), Method::POST, format!("{base}/v1/sign_ins")).await;
    assert_eq!(status, StatusCode::OK);
    let stub: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(stub["path"], "/v1/sign_ins");
    // Backend requests over the same connection pool, and the exempt JWKS route.
    let (status, _, _) = send(b.clone(), Method::GET, format!("{base}/v1/jwks")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(b, Method::GET, format!("{base}/v1/users")).await;
    assert_eq!(status, StatusCode::OK);

    let sign_in = handle.rule("sign_in").unwrap();
    assert_eq!((sign_in.admitted, sign_in.limited), (6, 1));
    assert_eq!(handle.exempted(), 1);
    assert_eq!(handle.rule("instance").unwrap().admitted, 1);
    server.abort();
}
