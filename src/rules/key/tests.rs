use super::*;
use http::HeaderName;
use http::Request;
use siphasher::sip::SipHasher13;
use std::net::SocketAddr;

fn hash_of(ext: &dyn KeyExtractor, req: &RequestParts<'_>) -> Result<u64, KeyMissing> {
    let mut b = KeyBuilder::new(SipHasher13::new_with_keys(1, 2));
    ext.extract(req, &mut b)?;
    Ok(b.finish())
}

fn req(headers: &[(&str, &str)]) -> Request<()> {
    let mut r = Request::builder().uri("/x");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(()).unwrap()
}

#[test]
fn bearer_token_parsing() {
    let ok = req(&[("authorization", "Bearer sk_test_1")]);
    assert_eq!(BearerToken::token(ok.headers()), Some(&b"sk_test_1"[..]));
    let lower = req(&[("authorization", "bearer   sk_test_1 ")]);
    assert_eq!(BearerToken::token(lower.headers()), Some(&b"sk_test_1"[..]));
    for bad in ["Basic abc", "Bearer", "Bearer ", "Bearersk", ""] {
        let r = req(&[("authorization", bad)]);
        assert_eq!(BearerToken::token(r.headers()), None, "{bad:?}");
    }
    let twice = req(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
    assert_eq!(BearerToken::token(twice.headers()), None);
    let a = req(&[("authorization", "Bearer a")]);
    let b = req(&[("authorization", "Bearer b")]);
    let (ha, hb) = (
        hash_of(&BearerToken, &RequestParts::new(&a)).unwrap(),
        hash_of(&BearerToken, &RequestParts::new(&b)).unwrap(),
    );
    assert_ne!(ha, hb);
    assert_eq!(
        hash_of(&BearerToken, &RequestParts::new(&req(&[]))),
        Err(KeyMissing {
            what: "Authorization: Bearer token"
        })
    );
}

#[test]
fn composite_parts_are_length_prefixed() {
    let c = Composite::new()
        .with(Header::new(HeaderName::from_static("x-a")))
        .with(Header::new(HeaderName::from_static("x-b")));
    let r1 = req(&[("x-a", "ab"), ("x-b", "c")]);
    let r2 = req(&[("x-a", "a"), ("x-b", "bc")]);
    assert_ne!(
        hash_of(&c, &RequestParts::new(&r1)).unwrap(),
        hash_of(&c, &RequestParts::new(&r2)).unwrap()
    );
    let r3 = req(&[("x-a", "ab")]);
    assert!(hash_of(&c, &RequestParts::new(&r3)).is_err());
}

#[test]
fn path_param_reads_captures() {
    let r = req(&[]);
    let mut parts = RequestParts::new(&r);
    assert!(hash_of(&PathParam::new("user_id"), &parts).is_err());
    parts.path_params.push("user_id", "user_1");
    let h1 = hash_of(&PathParam::new("user_id"), &parts).unwrap();
    parts.path_params.clear();
    parts.path_params.push("user_id", "user_2");
    assert_ne!(h1, hash_of(&PathParam::new("user_id"), &parts).unwrap());
    let mut names = Vec::new();
    PathParam::new("user_id").path_params(&mut |n| names.push(n.to_owned()));
    assert_eq!(names, ["user_id"]);
}

#[test]
fn peer_ip_from_extensions_and_grouping() {
    let ext = PeerIp::new();
    let mut r = req(&[("x-forwarded-for", "9.9.9.9")]);
    assert!(hash_of(&ext, &RequestParts::new(&r)).is_err());
    r.extensions_mut()
        .insert::<SocketAddr>("192.0.2.7:5000".parse().unwrap());
    assert_eq!(
        ext.client_ip(&RequestParts::new(&r)),
        Some("192.0.2.7".parse().unwrap()),
        "X-Forwarded-For from an untrusted peer is ignored"
    );
    let mut v6 = req(&[]);
    v6.extensions_mut()
        .insert::<SocketAddr>("[2001:db8:1:2:3:4:5:6]:1".parse().unwrap());
    assert_eq!(
        ext.client_ip(&RequestParts::new(&v6)),
        Some("2001:db8:1:2::".parse().unwrap())
    );
}

#[cfg(feature = "axum")]
#[test]
fn peer_ip_from_axum_connect_info() {
    let mut r = req(&[]);
    r.extensions_mut()
        .insert(axum::extract::ConnectInfo::<SocketAddr>(
            "198.51.100.1:80".parse().unwrap(),
        ));
    assert_eq!(
        PeerIp::new().client_ip(&RequestParts::new(&r)),
        Some("198.51.100.1".parse().unwrap())
    );
}

#[test]
fn closure_keys() {
    let ext =
        from_fn(|r: &RequestParts<'_>| r.headers.get("x-tenant").map(|v| v.as_bytes().to_vec()));
    let a = req(&[("x-tenant", "acme")]);
    assert!(hash_of(&ext, &RequestParts::new(&a)).is_ok());
    assert!(hash_of(&ext, &RequestParts::new(&req(&[]))).is_err());
    assert_eq!(
        hash_of(&Global, &RequestParts::new(&a)),
        hash_of(&Global, &RequestParts::new(&req(&[])))
    );
}

#[test]
fn finish_or_is_finish() {
    let seed = SipHasher13::new_with_keys(1, 2);
    let empty = KeyBuilder::new(seed).finish();
    let r = req(&[("x-k", "v")]);
    let parts = RequestParts::new(&r);
    for ext in [
        &Global as &dyn KeyExtractor,
        &Header::new(HeaderName::from_static("x-k")),
    ] {
        let mut b = KeyBuilder::new(seed);
        ext.extract(&parts, &mut b).unwrap();
        assert_eq!(b.finish_or(empty), b.finish());
    }
    let mut b = KeyBuilder::new(seed);
    b.push_hash(&());
    assert_eq!(b.finish_or(0), b.finish());
    assert_ne!(b.finish_or(0), 0);
}

#[test]
fn percent_decoded_parts_hash_as_their_decoded_bytes() {
    let seed = SipHasher13::new_with_keys(3, 4);
    let hash = |f: &dyn Fn(&mut KeyBuilder)| {
        let mut b = KeyBuilder::new(seed);
        f(&mut b);
        b.finish()
    };
    for (encoded, decoded) in [
        ("user%5F1", &b"user_1"[..]),
        ("%75ser_1", b"user_1"),
        ("user_1", b"user_1"),
        ("a%2Fb%2f", b"a/b/"),
        ("%zz%4", b"%zz%4"),
        ("%25zz", b"%zz"),
        ("%C3%A9%FF", &[0xc3, 0xa9, 0xff]),
        ("x%41%42%43yz", b"xABCyz"),
    ] {
        assert_eq!(
            hash(&|b| b.push_percent_decoded(encoded.as_bytes())),
            hash(&|b| b.push(decoded)),
            "{encoded}"
        );
    }
    // Still length-prefixed: the parts do not run into each other.
    assert_ne!(
        hash(&|b| {
            b.push_percent_decoded(b"a%62");
            b.push(b"c");
        }),
        hash(&|b| {
            b.push(b"a");
            b.push(b"bc");
        })
    );
}

#[test]
fn a_repeated_header_is_no_key() {
    // Keyed on every value, a client repeating the header got a fresh bucket per extra
    // value while the application authenticated it by the first (or last) one.
    let h = Header::new(HeaderName::from_static("x-api-key"));
    let missing = Err(KeyMissing { what: "header" });
    let one = req(&[("x-api-key", "k1")]);
    assert!(hash_of(&h, &RequestParts::new(&one)).is_ok());
    let twice = req(&[("x-api-key", "k1"), ("x-api-key", "junk")]);
    assert_eq!(hash_of(&h, &RequestParts::new(&twice)), missing);
    let same_twice = req(&[("x-api-key", "k1"), ("x-api-key", "k1")]);
    assert_eq!(hash_of(&h, &RequestParts::new(&same_twice)), missing);
    let empty_then_key = req(&[("x-api-key", ""), ("x-api-key", "k1")]);
    assert_eq!(hash_of(&h, &RequestParts::new(&empty_then_key)), missing);
    assert_eq!(
        hash_of(&h, &RequestParts::new(&req(&[("x-api-key", "")]))),
        missing
    );
}
