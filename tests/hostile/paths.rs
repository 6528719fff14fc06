//! Attacks on paths: spellings of one route must match its rule, and spellings of one path
//! parameter must share its bucket. Sent byte for byte over
//! loopback HTTP, like `curl --path-as-is`.

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

/// `POST //v1//sign_ins` is the sign-in route's bucket.
/// A spelling is not carved out of the backend rule (carve-outs match the path as sent),
/// so it also needs a key: without one it is refused outright.
#[tokio::test]
async fn doubled_slashes_spend_the_sign_in_bucket() {
    let server = Server::clerk().await;
    let key = bearer("sk_test_slashes");
    let auth = [("authorization", key.as_str())];
    let req = Raw::new("POST", "//v1//sign_ins").headers(&auth);
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(server.send("127.0.0.4", &req).await.status);
    }
    let admitted = statuses.iter().filter(|&&s| s != 429).count();
    assert_eq!(admitted, 5, "{statuses:?}");
    // Admitted by the limiter, then not found by the router (it does not merge slashes).
    assert_eq!(&statuses[..5], &[404; 5]);
    // And the real route shares the bucket.
    let real = server
        .send("127.0.0.4", &Raw::new("POST", "/v1/sign_ins"))
        .await;
    assert_eq!(real.status, 429);
    // Without a key: never admitted.
    let keyless = Raw::new("POST", "//v1//sign_ins");
    assert_eq!(server.count(12, "127.0.0.7", &keyless, 401).await, 12);
}

/// Once the real route's bucket is empty, every spelling of it is refused with it (429),
/// refused as unreadable (400: dot segments), or not a route at all (404).
#[tokio::test]
async fn every_spelling_of_sign_in_is_counted_or_not_found() {
    let server = Server::clerk().await;
    let key = bearer("sk_test_spellings");
    let auth = [("authorization", key.as_str())];
    let cases: &[(&str, u16)] = &[
        ("//v1//sign_ins", 429),
        ("//v1/sign_ins", 429),
        ("/v1//sign_ins", 429),
        ("/v1/sign_ins//", 429),
        ("/v1/sign_ins/", 429),
        ("/v1/sign_%69ns", 429),
        ("/v1/%73%69%67%6E_ins", 429),
        ("/%76%31/sign%5fins", 429),
        ("/v1/sign_ins/.", 400),
        ("/v1/./sign_ins", 400),
        ("/v1/x/../sign_ins", 400),
        ("/v1/x/%2e%2E/sign_ins", 400),
        ("/v1/x/.%2E/sign_ins", 400),
        // RFC 3986 paths are case-sensitive, and so is the router: not a route.
        ("/V1/SIGN_INS", 404),
    ];
    for (i, (target, expected)) in cases.iter().enumerate() {
        let ip = format!("127.0.1.{}", i + 1);
        let real = Raw::new("POST", "/v1/sign_ins");
        assert_eq!(server.count(5, &ip, &real, 200).await, 5, "{target}");
        let answer = server
            .send(&ip, &Raw::new("POST", target).headers(&auth))
            .await;
        assert_eq!(answer.status, *expected, "{target}");
    }
    // Every 400 is counted, so an operator sees probing with dot segments.
    let refused_400 = cases.iter().filter(|(_, s)| *s == 400).count() as u64;
    assert_eq!(server.handle.bad_paths(), refused_400);
}

/// A spelling sent first spends the real route's bucket.
#[tokio::test]
async fn a_spelling_spends_the_real_routes_bucket() {
    let server = Server::clerk().await;
    let key = bearer("sk_test_first");
    let auth = [("authorization", key.as_str())];
    for (i, target) in ["//v1/sign_ins", "/v1/sign_%69ns", "/v1//sign_ins/"]
        .iter()
        .enumerate()
    {
        let ip = format!("127.0.2.{}", i + 1);
        let variant = Raw::new("POST", target).headers(&auth);
        assert_eq!(server.count(5, &ip, &variant, 429).await, 0, "{target}");
        let real = server.send(&ip, &Raw::new("POST", "/v1/sign_ins")).await;
        assert_eq!(real.status, 429, "{target}");
    }
}

/// `GET //v1/users` without a bearer key got 200: the backend rule needs a key.
#[tokio::test]
async fn backend_spellings_need_a_key() {
    let server = Server::clerk().await;
    for target in [
        "//v1/users",
        "/v1//users",
        "/v1/%75sers",
        "/%76%31/users/",
        "/v1/users%zz",
        // Exempt routes are exempt only as written: a spelling of one is not.
        "//v1/jwks",
        "/v1/%6Awks",
    ] {
        let answer = server.send("127.0.0.5", &Raw::new("GET", target)).await;
        assert_eq!(answer.status, 401, "{target}");
    }
    let jwks = server.send("127.0.0.5", &Raw::new("GET", "/v1/jwks")).await;
    assert_eq!(jwks.status, 200);
    // An unknown path with a key is the router's 404, not a catch-all 200.
    let key = bearer("sk_test_paths");
    let auth = [("authorization", key.as_str())];
    let unknown = Raw::new("GET", "/v1/no_such_thing").headers(&auth);
    assert_eq!(server.send("127.0.0.5", &unknown).await.status, 404);
}

/// `user_1`, `user%5F1` and `%75ser_1` are one user for axum's `Path`: one 10 per 10 s
/// bucket, so exactly 10 of 30 are admitted.
#[tokio::test]
async fn encoded_user_ids_share_one_bucket() {
    let server = Server::clerk().await;
    let key = bearer("sk_test_users");
    let auth = [("authorization", key.as_str())];
    let spellings = [
        "/v1/users/user_1",
        "/v1/users/user%5F1",
        "/v1/users/%75ser_1",
    ];
    let mut admitted = 0;
    let mut refused = 0;
    for i in 0..30 {
        let req = Raw::new("PATCH", spellings[i % 3]).headers(&auth);
        match server.send("127.0.0.6", &req).await.status {
            200 => admitted += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((admitted, refused), (10, 20));
    // The metadata route is the same bucket, under any spelling.
    let meta = Raw::new("PATCH", "/v1/users/user%5f1/metadata").headers(&auth);
    assert_eq!(server.send("127.0.0.6", &meta).await.status, 429);
    // Another user is untouched.
    let other = Raw::new("PATCH", "/v1/users/user_2").headers(&auth);
    assert_eq!(server.send("127.0.0.6", &other).await.status, 200);
}

/// Randomized cases: `HOSTILE_CASES` (default 2,000).
fn cases() -> usize {
    std::env::var("HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

/// xorshift64*: reproducible randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

/// `s` with some of its characters percent-encoded (hex in either case) and some slashes
/// doubled; also says whether a reserved character (`+ : @ !`) was encoded, which changes
/// the canonical form (though not the key axum's `Path` decodes).
fn respell(s: &str, rng: &mut Rng) -> (String, bool) {
    let mut out = String::new();
    let mut reserved = false;
    for c in s.chars() {
        match c {
            '/' if rng.below(3) == 0 => out.push_str("//"),
            '/' => out.push('/'),
            c if rng.below(3) == 0 => {
                reserved |= "+:@!".contains(c);
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let esc = format!("%{b:02X}");
                    out.push_str(&if rng.below(2) == 0 {
                        esc.to_ascii_lowercase()
                    } else {
                        esc
                    });
                }
            }
            c => out.push(c),
        }
    }
    (out, reserved)
}

/// Through the layer (in process, paused time): for random user ids, random spellings of
/// `PATCH /v1/users/{id}` and of the id itself are one 10 per 10 s bucket, never more; and
/// spellings that differ only in unreserved or non-ASCII characters and slashes have one
/// canonical form.
#[tokio::test(start_paused = true)]
async fn random_spellings_never_split_a_bucket() {
    use tower::ServiceExt;
    use tower_throttle::path::canonicalize;
    let (app, handle) = crate::clerk::app(crate::clerk::Instance::Production).unwrap();
    let mut rng = Rng(0x5eed_0f11);
    const ALPHABET: &[char] = &['a', 'Z', '0', '_', '-', '.', '~', 'é', '+', ':', '@', '!'];
    let n = cases();
    for case in 0..n {
        let tail: String = (0..rng.below(10))
            .map(|_| ALPHABET[rng.below(ALPHABET.len())])
            .collect();
        let path = format!("/v1/users/u{case}{tail}");
        let canonical = canonicalize(&path).unwrap().into_owned();
        let mut admitted = 0;
        for _ in 0..11 {
            let (spelled, reserved) = respell(&path, &mut rng);
            if !reserved {
                assert_eq!(canonicalize(&spelled).unwrap(), canonical, "{spelled}");
            }
            let req = axum::http::Request::builder()
                .method("PATCH")
                .uri(spelled.as_str())
                .header("authorization", format!("Bearer sk_live_{}", case % 64))
                .extension(std::net::SocketAddr::from(([192, 0, 2, 1], 1)))
                .body(axum::body::Body::empty())
                .unwrap();
            let status = app.clone().oneshot(req).await.unwrap().status();
            // Admitted: served (200), or not a route of the router (404: it does not
            // merge slashes nor decode the literal segments).
            assert!(
                [200, 404, 429].contains(&status.as_u16()),
                "{spelled}: {status}"
            );
            admitted += usize::from(status != 429);
        }
        assert_eq!(admitted, 10, "{path}");
        // Every 50 users, a new 10 s window: keys stay few at any case count.
        if case % 50 == 49 {
            tokio::time::advance(std::time::Duration::from_secs(10)).await;
        }
    }
    let users = handle.rule("user_update").unwrap();
    assert_eq!((users.admitted, users.limited), (10 * n as u64, n as u64));
}

/// The exempt `GET /v1/jwks` matched `/v1/jwks/` too (one trailing slash allowed), which
/// the router serves elsewhere (here its 404 fallback): a carve-out is the path exactly as
/// sent, so `/v1/jwks/` is under the backend rule and needs a key.
#[tokio::test]
async fn an_exempt_route_does_not_cover_its_trailing_slash() {
    let server = Server::clerk().await;
    assert_eq!(
        server
            .send("127.0.0.4", &Raw::new("GET", "/v1/jwks"))
            .await
            .status,
        200
    );
    for target in ["/v1/jwks/", "//v1/jwks", "/v1/%6Awks"] {
        let answer = server.send("127.0.0.4", &Raw::new("GET", target)).await;
        assert_eq!(answer.status, 401, "{target}");
    }
    assert_eq!(server.handle.exempted(), 1);
}
