use std::convert::Infallible;
use std::io;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use tower::ServiceExt;

use super::*;
use crate::BoxError;

type Frames = Vec<Result<Frame<Bytes>, io::Error>>;

fn data(s: &'static str) -> Result<Frame<Bytes>, io::Error> {
    Ok(Frame::data(Bytes::from_static(s.as_bytes())))
}

/// Sends one request through a `BufferResponse` (bound `max_bytes`) around a service that
/// answers `frames` with `headers`.
async fn through(
    max_bytes: usize,
    headers: &[(&'static str, &'static str)],
    frames: Frames,
) -> Response<
    BufferedBody<StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, io::Error>>>>>,
> {
    let mut res = Response::new(StreamBody::new(stream::iter(frames)));
    for (k, v) in headers {
        res.headers_mut().insert(*k, v.parse().unwrap());
    }
    let res = std::sync::Mutex::new(Some(res));
    let svc = tower::service_fn(move |_req: Request<()>| {
        let res = res.lock().unwrap().take().unwrap();
        async move { Ok::<_, Infallible>(res) }
    });
    let settings = BufferSettings {
        max_bytes,
        read_when: None,
    };
    BufferResponse::new(svc, Arc::new(settings))
        .oneshot(Request::new(()))
        .await
        .unwrap()
}

/// What the caller reads: every data byte, the trailers, and the error if one ended it.
async fn drain<B>(mut body: B) -> (Vec<u8>, Option<HeaderMap>, Option<String>)
where
    B: http_body::Body<Data = Bytes, Error = BoxError> + Unpin,
{
    let (mut bytes, mut trailers, mut error) = (Vec::new(), None, None);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => match frame.into_data() {
                Ok(d) => bytes.extend_from_slice(&d),
                Err(frame) => trailers = frame.into_trailers().ok(),
            },
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    (bytes, trailers, error)
}

fn read_bytes<B>(res: &Response<B>) -> Option<&Bytes> {
    res.extensions().get::<ResponseBytes>().map(|b| &b.0)
}

#[tokio::test]
async fn a_body_within_the_bound_is_read_whole_and_handed_on_unchanged() {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    let frames = vec![
        data(r#"{"status":"#),
        data(r#""PENDING"}"#),
        Ok(Frame::trailers(trailers.clone())),
    ];
    let res = through(64, &[], frames).await;
    let body = r#"{"status":"PENDING"}"#.as_bytes();
    assert_eq!(read_bytes(&res).map(|b| &b[..]), Some(body));
    assert_eq!(res.body().buffered().map(|b| &b[..]), Some(body));
    assert!(res.body().is_buffered());
    assert_eq!(http_body::Body::size_hint(res.body()).exact(), Some(20));
    let (bytes, got_trailers, error) = drain(res.into_body()).await;
    assert_eq!((bytes.as_slice(), error), (body, None));
    assert_eq!(got_trailers, Some(trailers));
}

#[tokio::test]
async fn a_body_in_one_chunk_is_not_copied() {
    let chunk = Bytes::from(vec![b'x'; 1000]);
    let res = through(1000, &[], vec![Ok(Frame::data(chunk.clone()))]).await;
    let read = read_bytes(&res).unwrap();
    assert_eq!(read.as_ptr(), chunk.as_ptr(), "the same buffer, not a copy");
    assert_eq!(res.body().buffered().unwrap().as_ptr(), chunk.as_ptr());
}

#[tokio::test]
async fn a_body_over_the_bound_is_handed_on_whole_and_not_read() {
    let frames = vec![data("0123456789"), data("abcdef"), data("ghij")];
    // 10 bytes fit, 16 do not: the read stops at the second chunk.
    let res = through(12, &[], frames).await;
    assert!(read_bytes(&res).is_none(), "the policy is told nothing");
    assert!(!res.body().is_buffered() && res.body().buffered().is_none());
    assert!(!http_body::Body::is_end_stream(res.body()));
    let (bytes, trailers, error) = drain(res.into_body()).await;
    assert_eq!(bytes, b"0123456789abcdefghij", "never truncated");
    assert_eq!((trailers, error), (None, None));
}

#[tokio::test]
async fn exactly_the_bound_is_read() {
    let res = through(10, &[], vec![data("01234"), data("56789")]).await;
    assert_eq!(read_bytes(&res).map(|b| &b[..]), Some(&b"0123456789"[..]));
}

#[tokio::test]
async fn a_body_declared_over_the_bound_is_not_polled() {
    let mut res = Response::new(Full::new(Bytes::from_static(b"0123456789")));
    res.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    let res = std::sync::Mutex::new(Some(res));
    let svc = tower::service_fn(move |_req: Request<()>| {
        let res = res.lock().unwrap().take().unwrap();
        async move { Ok::<_, Infallible>(res) }
    });
    let settings = BufferSettings {
        max_bytes: 9,
        read_when: None,
    };
    let res = BufferResponse::new(svc, Arc::new(settings))
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert!(read_bytes(&res).is_none());
    // Untouched: the original body, its exact size hint kept.
    assert_eq!(http_body::Body::size_hint(res.body()).exact(), Some(10));
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&bytes[..], b"0123456789");
}

#[tokio::test]
async fn a_body_that_fails_is_handed_on_with_its_error() {
    let frames = vec![
        data("partial "),
        data("json"),
        Err(io::Error::other("connection reset mid-body")),
    ];
    let res = through(1024, &[], frames).await;
    assert!(read_bytes(&res).is_none());
    let (bytes, _, error) = drain(res.into_body()).await;
    assert_eq!(bytes, b"partial json", "the bytes read are not lost");
    assert_eq!(error.as_deref(), Some("connection reset mid-body"));
}

#[tokio::test]
async fn streams_and_grpc_bodies_are_never_read() {
    for content_type in [
        "text/event-stream",
        "application/grpc",
        "application/grpc+proto",
    ] {
        let res = through(1024, &[("content-type", content_type)], vec![data("event")]).await;
        assert!(read_bytes(&res).is_none(), "{content_type}");
        assert!(!res.body().is_buffered(), "{content_type}");
        let (bytes, _, _) = drain(res.into_body()).await;
        assert_eq!(bytes, b"event");
    }
    let res = through(
        1024,
        &[("content-type", "application/json")],
        vec![data("{}")],
    )
    .await;
    assert_eq!(read_bytes(&res).map(|b| &b[..]), Some(&b"{}"[..]));
}

#[tokio::test]
async fn read_when_chooses_the_responses() {
    let settings = Arc::new(BufferSettings {
        max_bytes: 1024,
        read_when: Some(Arc::new(|status, _headers: &HeaderMap| {
            status == StatusCode::OK
        })),
    });
    for (code, read) in [(200, true), (500, false)] {
        let svc = tower::service_fn(move |_req: Request<()>| async move {
            let mut res = Response::new(Full::new(Bytes::from_static(b"body")));
            *res.status_mut() = StatusCode::from_u16(code).unwrap();
            Ok::<_, Infallible>(res)
        });
        let res = BufferResponse::new(svc, Arc::clone(&settings))
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(read_bytes(&res).is_some(), read, "{code}");
    }
}

#[tokio::test]
async fn an_empty_body_is_read_as_empty() {
    let res = through(16, &[], vec![]).await;
    assert_eq!(read_bytes(&res).map(|b| b.len()), Some(0));
    assert!(http_body::Body::is_end_stream(res.body()));
}

/// The data frames the caller receives.
async fn frames<B>(mut body: B) -> Vec<Bytes>
where
    B: http_body::Body<Data = Bytes, Error = BoxError> + Unpin,
{
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.unwrap().into_data() {
            out.push(d);
        }
    }
    out
}

#[tokio::test]
async fn many_small_chunks_are_kept_in_one_buffer() {
    // A hostile server sends 1-byte chunks: the read holds one buffer, not one handle per
    // byte, and hands the body on as one frame.
    let one_byte = || Ok(Frame::data(Bytes::from_static(b"z")));
    let res = through(1000, &[], (0..1000).map(|_| one_byte()).collect()).await;
    assert_eq!(read_bytes(&res).map(Bytes::len), Some(1000));
    let got = frames(res.into_body()).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0], vec![b'z'; 1000]);
}

#[tokio::test]
async fn over_the_bound_the_read_part_is_one_frame_then_the_rest_as_it_comes() {
    let one_byte = || Ok(Frame::data(Bytes::from_static(b"z")));
    let mut chunks: Frames = (0..10).map(|_| one_byte()).collect();
    chunks.push(data("crossing"));
    chunks.push(data("rest"));
    let res = through(12, &[], chunks).await;
    assert!(read_bytes(&res).is_none());
    let got = frames(res.into_body()).await;
    let expect: [&[u8]; 3] = [b"zzzzzzzzzz", b"crossing", b"rest"];
    assert_eq!(got, expect);
}
