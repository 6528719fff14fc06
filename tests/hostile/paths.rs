//! Attacks of issue 11 (paths): filled in by its change.

use crate::harness::{bearer, Raw, Server};

/// The baseline the other path tests compare with: the real route refuses the 6th sign-in
/// from one IP, over raw loopback HTTP.
#[tokio::test]
async fn the_real_sign_in_route_refuses_the_sixth() {
    let server = Server::clerk().await;
    let req = Raw::new("POST", "/v1/sign_ins");
    assert_eq!(server.count(5, "127.0.0.2", &req, 200).await, 5);
    let refused = server.send("127.0.0.2", &req).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("2"));
    let key = bearer("sk_test_harness");
    let auth = [("authorization", key.as_str())];
    let backend = Raw::new("GET", "/v1/users").headers(&auth);
    assert_eq!(server.send("127.0.0.3", &backend).await.status, 200);
}
