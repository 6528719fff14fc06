use super::*;

fn target(path: &str, fold_case: bool) -> Target<'_> {
    Target::Path {
        raw: path,
        canonical: canonicalize(path).unwrap(),
        fold_case,
    }
}

/// Whether `route` includes `method path` (canonically), with the captures.
fn m(route: &Route, method: Method, path: &str) -> Option<Vec<(String, String)>> {
    let c = route.compile().unwrap();
    let t = target(path, false);
    let mut p = PathParams::default();
    c.includes(&method, &t, &mut p).then(|| {
        ["id", "user_id", "rest", "organization_id"]
            .iter()
            .filter_map(|n| p.get(n).map(|v| ((*n).to_owned(), v.to_owned())))
            .collect()
    })
}

#[test]
fn templates_match_and_capture() {
    let r = Route::patch("/v1/users/{user_id}");
    assert_eq!(
        m(&r, Method::PATCH, "/v1/users/u_1"),
        Some(vec![("user_id".into(), "u_1".into())])
    );
    assert!(m(&r, Method::PATCH, "/v1/users/u_1/").is_some());
    assert!(m(&r, Method::GET, "/v1/users/u_1").is_none());
    assert!(m(&r, Method::PATCH, "/v1/users/").is_none());
    assert!(m(&r, Method::PATCH, "/v1/users").is_none());
    assert!(m(&r, Method::PATCH, "/v1/users/u_1/metadata").is_none());
    assert!(m(&r, Method::PATCH, "/v1/users//").is_none());
    let lit = Route::post("/v1/sign_ins");
    assert!(m(&lit, Method::POST, "/v1/sign_ins").is_some());
    assert!(m(&lit, Method::POST, "/v1/sign_ins/").is_some());
    assert!(m(&lit, Method::POST, "/v1/sign_insx").is_none());
    assert!(m(&lit, Method::POST, "/v1/sign_ins/x").is_none());
    let rest = Route::any("/v1/{*rest}");
    assert_eq!(
        m(&rest, Method::DELETE, "/v1/a/b"),
        Some(vec![("rest".into(), "a/b".into())])
    );
    assert!(m(&rest, Method::GET, "/v2/a").is_none());
    let root = Route::any("/");
    assert!(m(&root, Method::GET, "/").is_some());
    assert!(m(&root, Method::GET, "/a").is_none());
}

#[test]
fn spellings_are_included_and_captured_canonically() {
    let lit = Route::post("/v1/sign_ins");
    for p in ["//v1//sign_ins", "/v1/sign_%69ns", "/%76%31/sign_ins//"] {
        assert!(m(&lit, Method::POST, p).is_some(), "{p}");
    }
    assert!(m(&lit, Method::POST, "/V1/SIGN_INS").is_none());
    let r = Route::patch("/v1/users/{user_id}");
    assert_eq!(
        m(&r, Method::PATCH, "/v1/users/%75ser%5f1"),
        Some(vec![("user_id".into(), "user_1".into())])
    );
    // A reserved escape stays one segment, upper-cased.
    assert_eq!(
        m(&r, Method::PATCH, "/v1/users/a%2fb"),
        Some(vec![("user_id".into(), "a%2Fb".into())])
    );
    // Template literals are canonical too.
    let encoded = Route::post("/v1/sign_%69ns");
    assert!(m(&encoded, Method::POST, "/v1/sign_ins").is_some());
}

#[test]
fn carve_outs_match_the_path_as_sent() {
    let jwks = Route::get("/v1/jwks").compile().unwrap();
    // Exactly as sent: a trailing slash too (axum serves `/v1/jwks/` elsewhere).
    for (path, excluded) in [
        ("/v1/jwks", true),
        ("/v1/jwks/", false),
        ("//v1/jwks", false),
        ("/v1/%6Awks", false),
    ] {
        let t = target(path, false);
        let mut p = PathParams::default();
        assert_eq!(jwks.excludes(&Method::GET, &t, &mut p), excluded, "{path}");
        assert!(jwks.includes(&Method::GET, &t, &mut p), "{path}");
        // HEAD is under a GET rule, not under a GET carve-out.
        assert!(!jwks.excludes(&Method::HEAD, &t, &mut p), "{path}");
        assert!(jwks.includes(&Method::HEAD, &t, &mut p), "{path}");
    }
    let slashed = Route::get("/v1/dir/").compile().unwrap();
    let rest = Route::get("/static/{*file}").compile().unwrap();
    for (route, path, excluded) in [
        (&slashed, "/v1/dir/", true),
        (&slashed, "/v1/dir", false),
        (&rest, "/static/a/", true),
        (&rest, "/static/a", true),
    ] {
        let t = target(path, false);
        let mut p = PathParams::default();
        assert_eq!(route.excludes(&Method::GET, &t, &mut p), excluded, "{path}");
    }
}

#[test]
fn case_folding_is_opt_in() {
    let lit = Route::post("/v1/sign_ins").compile().unwrap();
    for (path, fold, expected) in [
        ("/V1/SIGN_INS", false, false),
        ("/V1/SIGN_INS", true, true),
        ("//V1/Sign_%49ns", true, true),
        ("/v1/sign_ins", true, true),
    ] {
        let t = target(path, fold);
        let mut p = PathParams::default();
        assert_eq!(lit.includes(&Method::POST, &t, &mut p), expected, "{path}");
    }
    // Parameter values keep their case.
    let r = Route::patch("/v1/users/{user_id}").compile().unwrap();
    let t = target("/V1/USERS/User_1", true);
    let mut p = PathParams::default();
    assert!(r.includes(&Method::PATCH, &t, &mut p));
    assert_eq!(p.get("user_id"), Some("User_1"));
}

#[cfg(feature = "axum")]
#[test]
fn matched_templates_compare_by_shape() {
    let r = Route::patch("/v1/users/{user_id}").compile().unwrap();
    assert!(r.is_template("/v1/users/{user_id}"));
    assert!(r.is_template("/v1/users/{id}"));
    assert!(!r.is_template("/v1/users/{*id}"));
    assert!(!r.is_template("/v1/users/me"));
    assert!(!r.is_template("/v1/users"));
    assert!(!r.is_template("/v1/users/{id}/metadata"));
    let rest = Route::any("/v1/{*rest}").compile().unwrap();
    assert!(rest.is_template("/v1/{*path}"));
    assert!(!rest.is_template("/v1/{path}"));
    let root = Route::any("/").compile().unwrap();
    assert!(root.is_template("/"));
    assert!(!root.is_template("/x"));
    // The rule applies on its template even when the captures fail (nested routers).
    let t = Target::Matched {
        template: "/v1/users/{id}",
        raw: "/users/u_1",
    };
    let mut p = PathParams::default();
    assert!(r.includes(&Method::PATCH, &t, &mut p));
    assert_eq!(p.get("user_id"), None);
    let t = Target::Matched {
        template: "/v1/users/{id}",
        raw: "/v1/users/u%5F1",
    };
    assert!(r.includes(&Method::PATCH, &t, &mut p));
    assert_eq!(p.get("user_id"), Some("u%5F1"));
    assert!(!r.includes(&Method::GET, &t, &mut p));
}

#[test]
fn bad_templates_are_errors() {
    for t in [
        "v1/x",
        "/v1/{}",
        "/v1/{a}/{a}",
        "/v1/{*a}/b",
        "/v1/x{a}",
        "/v1//x",
        "/{a-b}",
        "/v1/../x",
        "/v1/%2e",
    ] {
        assert!(Route::any(t).compile().is_err(), "{t}");
    }
    let nine = (0..9).map(|i| format!("/{{p{i}}}")).collect::<String>();
    assert!(Route::any(nine).compile().is_err());
}

#[test]
fn grpc_routes_match_their_paths_under_every_http_method() {
    let method = Route::grpc_method("helloworld.Greeter", "SayHello");
    let service = Route::grpc_service("helloworld.Greeter");
    assert_eq!(method.to_string(), "* /helloworld.Greeter/SayHello");
    assert_eq!(service.to_string(), "* /helloworld.Greeter/{*method}");
    for verb in [Method::POST, Method::GET, Method::PUT, Method::HEAD] {
        assert!(m(&method, verb.clone(), "/helloworld.Greeter/SayHello").is_some());
        assert!(m(&service, verb, "/helloworld.Greeter/SayHello").is_some());
    }
    for other in [
        "/helloworld.Greeter/SayHelloAgain",
        "/helloworld.Greeter",
        "/helloworld.GreeterX/SayHello",
        "/other.Greeter/SayHello",
    ] {
        assert!(m(&method, Method::POST, other).is_none(), "{other}");
    }
    assert!(m(&service, Method::POST, "/helloworld.GreeterX/SayHello").is_none());
    assert!(m(&service, Method::POST, "/helloworld/Greeter").is_none());
    // The method's name is the `method` parameter of a service route.
    let c = service.compile().unwrap();
    let t = target("/helloworld.Greeter/SayHello", false);
    let mut p = PathParams::default();
    assert!(c.includes(&Method::POST, &t, &mut p));
    assert_eq!(p.get("method"), Some("SayHello"));
    // An exempt service: every method as sent, any HTTP method.
    let health = Route::grpc_service("grpc.health.v1.Health")
        .compile()
        .unwrap();
    for path in [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
    ] {
        let t = target(path, false);
        let mut p = PathParams::default();
        assert!(health.excludes(&Method::GET, &t, &mut p), "{path}");
    }
    let t = target("/grpc.health.v1.HealthX/Check", false);
    let mut p = PathParams::default();
    assert!(!health.excludes(&Method::POST, &t, &mut p));
}

#[test]
fn bad_grpc_names_are_errors_not_other_routes() {
    for (route, needle) in [
        (Route::grpc_service("helloworld/Greeter"), "contains '/'"),
        (Route::grpc_service("/helloworld.Greeter"), "contains '/'"),
        (Route::grpc_service(""), "\"\" is not an identifier"),
        (
            Route::grpc_service("hello world.Greeter"),
            "\"hello world\"",
        ),
        (
            Route::grpc_service("helloworld..Greeter"),
            "\"\" is not an identifier",
        ),
        (
            Route::grpc_service("helloworld.Greeter."),
            "\"\" is not an identifier",
        ),
        (Route::grpc_service("1pkg.Greeter"), "\"1pkg\""),
        (Route::grpc_service("pkg.{x}"), "\"{x}\""),
        (Route::grpc_service("pkg.Grüße"), "\"Grüße\""),
        (
            Route::grpc_method("helloworld.Greeter", ""),
            "gRPC method name \"\"",
        ),
        (
            Route::grpc_method("helloworld.Greeter", "Say/Hello"),
            "gRPC method name",
        ),
        (
            Route::grpc_method("helloworld.Greeter", "{*m}"),
            "gRPC method name",
        ),
        (
            Route::grpc_method("helloworld.Greeter", ".."),
            "gRPC method name",
        ),
        (
            Route::grpc_method("hello/world", "SayHello"),
            "contains '/'",
        ),
    ] {
        let err = route.compile().unwrap_err();
        assert!(err.contains(needle), "{route}: {err}");
    }
    for ok in ["a", "_a", "a1.B_2.c", "grpc.health.v1.Health"] {
        assert!(Route::grpc_service(ok).compile().is_ok(), "{ok}");
        assert!(Route::grpc_method(ok, "_M1").compile().is_ok(), "{ok}");
    }
}

#[test]
fn bad_grpc_names_surface_when_the_layer_is_built() {
    use crate::rate_limit::BuildError;
    use crate::{Quota, RateLimitLayer, Rule};
    let rule = Rule::new("greeter", Quota::per_second(1).unwrap())
        .route(Route::grpc_method("helloworld.Greeter", "Say-Hello"));
    let err = RateLimitLayer::builder().rule(rule).build().unwrap_err();
    let reason = "gRPC method name \"Say-Hello\" is not an identifier (ASCII letters, digits \
                  and '_', not starting with a digit)";
    assert_eq!(
        err,
        BuildError::BadTemplate {
            rule: "greeter".to_owned(),
            route: "* /helloworld.Greeter/Say-Hello".to_owned(),
            reason: reason.to_owned(),
        }
    );
    assert_eq!(
        err.to_string(),
        format!("rule \"greeter\": route `* /helloworld.Greeter/Say-Hello`: {reason}")
    );
    let exempt = RateLimitLayer::builder()
        .rule(Rule::new("all", Quota::per_second(1).unwrap()))
        .exempt(Route::grpc_service("grpc.health.v1/Health"))
        .build()
        .unwrap_err();
    assert!(
        matches!(&exempt, BuildError::BadTemplate { rule, .. } if rule == "exempt"),
        "{exempt}"
    );
}
