use super::*;
use futures_util::FutureExt;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use std::convert::Infallible;

type Frames = Vec<Result<Bytes, HeaderMap>>;
type Stream<E> =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, E>>>>;

fn trailers() -> HeaderMap {
    HeaderMap::from_iter([(http::header::ETAG, http::HeaderValue::from_static("\"v1\""))])
}

fn stream<E>(items: Vec<Result<Frame<Bytes>, E>>) -> Stream<E> {
    StreamBody::new(futures_util::stream::iter(items))
}

/// A streaming body of `parts` then the test trailers, and the frames it should yield.
fn chunked(parts: &[&'static str]) -> (Stream<Infallible>, Frames) {
    let data = parts.iter().map(|p| Ok(Bytes::from_static(p.as_bytes())));
    let frames: Frames = data.chain([Err(trailers())]).collect();
    let items = frames.iter().cloned();
    let items = items.map(|f| Ok(f.map_or_else(Frame::trailers, Frame::data)));
    (stream(items.collect()), frames)
}

async fn next_data<B: Body<Data = Bytes, Error: fmt::Debug> + Unpin>(body: &mut B) -> Bytes {
    let frame = body.frame().await.expect("a frame").expect("no error");
    frame.into_data().expect("a data frame")
}

async fn drain<B: Body<Data = Bytes, Error: fmt::Debug> + Unpin>(body: &mut B) -> Frames {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("no error").into_data();
        out.push(frame.map_err(|f| f.into_trailers().unwrap_or_default()));
    }
    out
}

#[tokio::test]
async fn full_body_replays_identical_bytes() {
    let expected: Frames = vec![Ok(Bytes::from_static(b"hello, world"))];
    let mut first = ReplayBody::new(Full::new(Bytes::from_static(b"hello, world")), 64);
    let mut spare = first.try_clone().unwrap();
    assert_eq!(spare.size_hint().exact(), Some(12));
    assert_eq!(drain(&mut first).await, expected);
    assert!(first.is_end_stream());
    let mut again = first.try_clone().unwrap();
    assert_eq!(again.size_hint().exact(), Some(12));
    assert_eq!(drain(&mut spare).await, expected);
    assert_eq!(drain(&mut again).await, expected);
    assert!(again.is_end_stream() && again.size_hint().exact() == Some(0));
}

#[tokio::test]
async fn streaming_body_under_limit_replays_chunks_and_trailers() {
    let (body, expected) = chunked(&["one", "two", "three"]);
    let mut first = ReplayBody::new(body, 64);
    assert_eq!(drain(&mut first).await, expected);
    assert!(first.is_replayable());
    let mut clone = first.try_clone().unwrap();
    assert_eq!(clone.size_hint().exact(), Some(11));
    assert!(!clone.is_end_stream());
    assert_eq!(drain(&mut clone).await, expected);
    assert!(clone.is_end_stream());
    assert_eq!(drain(&mut clone.try_clone().unwrap()).await, expected);
}

#[tokio::test]
async fn streaming_body_over_limit_streams_but_cannot_replay() {
    let (body, expected) = chunked(&["aaaa", "bbbb", "cccc"]);
    let mut first = ReplayBody::new(body, 10);
    let mut spare = first.try_clone().unwrap();
    assert_eq!(drain(&mut first).await, expected);
    assert!(!first.is_replayable() && !spare.is_replayable());
    assert!(first.try_clone().is_none());
    assert!(lock(&first.shared.state).chunks.is_empty());
    // A clone made in advance fails instead of ending early with a truncated body.
    let err = spare.frame().await.unwrap().unwrap_err();
    assert!(err.is::<BodyNotReplayable>());
    assert!(spare.is_end_stream());
}

#[tokio::test]
async fn size_hint_over_limit_is_not_replayable_from_the_start() {
    let data = Bytes::from(vec![b'x'; 100]);
    let mut first = ReplayBody::new(Full::new(data.clone()), 99);
    assert!(!first.is_replayable());
    assert!(first.try_clone().is_none());
    assert_eq!(first.size_hint().exact(), Some(100));
    assert_eq!(drain(&mut first).await, vec![Ok(data)]);
    assert!(lock(&first.shared.state).chunks.is_empty());
}

#[tokio::test]
async fn clone_after_partial_read_and_drop_yields_whole_body() {
    let (body, expected) = chunked(&["one", "two", "three"]);
    let mut first = ReplayBody::new(body, 64);
    let mut spare = first.try_clone().unwrap();
    assert_eq!(next_data(&mut first).await, "one");
    let mut mid = first.try_clone().unwrap();
    assert_eq!(mid.size_hint().lower(), 3);
    drop(first);
    assert_eq!(drain(&mut spare).await, expected);
    assert_eq!(drain(&mut mid).await, expected);
    assert_eq!(spare.try_clone().unwrap().size_hint().exact(), Some(11));
}

#[tokio::test]
async fn clone_waits_for_the_reading_instance() {
    let (body, expected) = chunked(&["one", "two", "three"]);
    let mut first = ReplayBody::new(body, 64);
    assert_eq!(next_data(&mut first).await, "one");
    let mut clone = first.try_clone().unwrap();
    assert_eq!(next_data(&mut clone).await, "one");
    assert!(clone.frame().now_or_never().is_none());
    let task = tokio::spawn(async move { drain(&mut clone).await });
    tokio::task::yield_now().await;
    assert_eq!(next_data(&mut first).await, "two");
    drop(first);
    assert_eq!(task.await.unwrap(), expected[1..]);
}

#[tokio::test]
async fn error_passes_through_and_ends_replay() {
    let body = stream(vec![Ok(Frame::data(Bytes::from("ok"))), Err("boom")]);
    let mut first = ReplayBody::new(body, 64);
    let mut spare = first.try_clone().unwrap();
    assert_eq!(next_data(&mut first).await, "ok");
    assert!(first.is_replayable());
    assert_eq!(
        first.frame().await.unwrap().unwrap_err().to_string(),
        "boom"
    );
    assert!(!first.is_replayable());
    assert!(first.try_clone().is_none());
    // A clone made in advance fails (the copy was dropped): no hang, no truncation.
    let err = spare.frame().await.unwrap().unwrap_err();
    assert!(err.is::<BodyNotReplayable>());
    assert!(spare.frame().await.is_none());
}

#[tokio::test]
async fn empty_body_is_end_stream() {
    let mut empty = ReplayBody::new(Empty::<Bytes>::new(), 0);
    let mut clone = empty.try_clone().unwrap();
    assert!(empty.is_end_stream() && clone.is_end_stream());
    assert_eq!(empty.size_hint().exact(), Some(0));
    assert_eq!(drain(&mut empty).await, Frames::new());
    assert_eq!(drain(&mut clone).await, Frames::new());
    let full = ReplayBody::new(Full::new(Bytes::new()), 0);
    assert!(full.is_end_stream() && full.try_clone().unwrap().is_end_stream());
}

#[tokio::test]
async fn body_exactly_at_limit_is_replayable() {
    let data = Bytes::from_static(b"0123456789");
    let mut full = ReplayBody::new(Full::new(data.clone()), 10);
    assert!(full.is_replayable());
    assert_eq!(drain(&mut full).await, vec![Ok(data.clone())]);
    assert_eq!(drain(&mut full.try_clone().unwrap()).await, vec![Ok(data)]);
    let (body, expected) = chunked(&["01234", "56789"]);
    let mut first = ReplayBody::new(body, 10);
    assert_eq!(drain(&mut first).await, expected);
    assert_eq!(drain(&mut first.try_clone().unwrap()).await, expected);
    let (body, expected) = chunked(&["01234", "567890"]);
    let mut over = ReplayBody::new(body, 10);
    assert_eq!(drain(&mut over).await, expected);
    assert!(!over.is_replayable());
}

#[tokio::test]
async fn wrap_shares_an_unread_outer_body_with_the_same_limit() {
    let (body, expected) = chunked(&["one", "two"]);
    let outer = ReplayBody::new(body, 64);
    let outer_spare = outer.try_clone().unwrap();
    let mut inner = ReplayBody::wrap(outer, 64);
    assert!(Arc::ptr_eq(&inner.shared, &outer_spare.shared), "one copy");
    let inner_spare = inner.try_clone().unwrap();
    assert_eq!(drain(&mut inner).await, expected);
    // The inner layer's retry and then the outer layer's replay the same bytes.
    assert_eq!(drain(&mut inner_spare.try_clone().unwrap()).await, expected);
    assert_eq!(drain(&mut outer_spare.try_clone().unwrap()).await, expected);
}

#[tokio::test]
async fn wrap_shared_body_over_the_limit_fails_every_replay() {
    let (body, expected) = chunked(&["01234", "567890"]);
    let outer = ReplayBody::new(body, 10);
    let mut outer_spare = outer.try_clone().unwrap();
    let mut inner = ReplayBody::wrap(outer, 10);
    let mut inner_spare = inner.try_clone().unwrap();
    assert_eq!(drain(&mut inner).await, expected);
    assert!(!inner.is_replayable() && !outer_spare.is_replayable());
    for spare in [&mut inner_spare, &mut outer_spare] {
        let err = spare.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyNotReplayable>());
    }
}

#[tokio::test]
async fn wrap_wraps_other_limits_read_bodies_and_other_types() {
    let data = Bytes::from_static(b"0123456789");
    // Another limit: the inner layer keeps its own copy under its own limit.
    let outer = ReplayBody::new(Full::new(data.clone()), 64);
    let spare = outer.try_clone().unwrap();
    let mut inner = ReplayBody::wrap(outer, 4);
    assert!(!Arc::ptr_eq(&inner.shared, &spare.shared));
    assert!(!inner.is_replayable() && spare.is_replayable());
    assert_eq!(drain(&mut inner).await, vec![Ok(data.clone())]);
    // A body already read from: wrapped, so the inner copy starts where it stands.
    let (body, _) = chunked(&["one", "two"]);
    let mut outer = ReplayBody::new(body, 64);
    assert_eq!(next_data(&mut outer).await, "one");
    let spare = outer.try_clone().unwrap();
    let mut inner = ReplayBody::wrap(outer, 64);
    assert!(!Arc::ptr_eq(&inner.shared, &spare.shared));
    assert_eq!(next_data(&mut inner).await, "two");
    // Any other body type is wrapped.
    let mut other = ReplayBody::wrap(Full::new(data.clone()), 64);
    assert_eq!(drain(&mut other).await, vec![Ok(data)]);
}

#[test]
fn is_send_and_sync_without_sync_inner() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ReplayBody>();
    assert_eq!(DEFAULT_MAX_REPLAY_BYTES, 65_536);
}
