//! Keys that are not read from the request itself: one bucket for all, several extractors
//! together, a closure, or a path parameter of the matched route.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use super::{KeyBuilder, KeyExtractor, KeyMissing, RequestParts};

/// One bucket for every request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Global;

impl KeyExtractor for Global {
    fn extract(&self, _: &RequestParts<'_>, _: &mut KeyBuilder) -> Result<(), KeyMissing> {
        Ok(())
    }
}

/// A path parameter captured by the rule's route template (e.g. `user_id` in
/// `/v1/users/{user_id}`). Rules check at build time that every template captures it.
///
/// The value is percent-decoded the way axum's `Path` extractor decodes it: every valid
/// `%XY` escape (reserved ones too: `a%2Fb` is `a/b`), an invalid one kept as is. So
/// `user_1`, `user%5F1` and `%75ser_1` are one key. A value that decodes to invalid UTF-8
/// (which axum's `Path` refuses) is keyed by its bytes.
#[derive(Debug, Clone)]
pub struct PathParam {
    name: Arc<str>,
}

impl PathParam {
    /// Key by the parameter called `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        PathParam { name: name.into() }
    }
}

impl KeyExtractor for PathParam {
    fn extract(&self, req: &RequestParts<'_>, key: &mut KeyBuilder) -> Result<(), KeyMissing> {
        match req.path_params.get(&self.name) {
            Some(v) if !v.is_empty() => {
                key.push_percent_decoded(v.as_bytes());
                Ok(())
            }
            _ => Err(KeyMissing {
                what: "path parameter",
            }),
        }
    }
    fn path_params(&self, visit: &mut dyn FnMut(&str)) {
        visit(&self.name)
    }
    fn fingerprint(&self, state: &mut dyn std::hash::Hasher) {
        state.write(b"PathParam");
        state.write(self.name.as_bytes());
        state.write_u8(0xff);
    }
}

/// Several extractors together: the key is the combination of all parts, and it is
/// missing if any part is.
#[derive(Clone, Default)]
pub struct Composite {
    parts: Vec<Arc<dyn KeyExtractor>>,
}

impl fmt::Debug for Composite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Composite")
            .field("parts", &self.parts.len())
            .finish()
    }
}

impl Composite {
    /// No parts yet (behaves like [`Global`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a part.
    pub fn with(mut self, part: impl KeyExtractor) -> Self {
        self.parts.push(Arc::new(part));
        self
    }

    /// [`with`](Self::with) a part already shared.
    #[cfg_attr(not(feature = "serde"), allow(dead_code))]
    pub(crate) fn with_arc(mut self, part: Arc<dyn KeyExtractor>) -> Self {
        self.parts.push(part);
        self
    }
}

impl KeyExtractor for Composite {
    fn extract(&self, req: &RequestParts<'_>, key: &mut KeyBuilder) -> Result<(), KeyMissing> {
        self.parts.iter().try_for_each(|p| p.extract(req, key))
    }
    fn path_params(&self, visit: &mut dyn FnMut(&str)) {
        for p in &self.parts {
            p.path_params(visit);
        }
    }
    fn fingerprint(&self, state: &mut dyn std::hash::Hasher) {
        state.write(b"Composite");
        state.write_usize(self.parts.len());
        for p in &self.parts {
            p.fingerprint(state);
        }
    }
}

/// A key computed by a closure; `None` means missing.
///
/// ```
/// use tower_throttle::key::{from_fn, RequestParts};
///
/// // Key by tenant, from a header set by an authentication layer.
/// let key = from_fn(|req: &RequestParts<'_>| {
///     req.headers.get("x-tenant").map(|v| v.as_bytes().to_vec())
/// });
/// ```
pub fn from_fn<F, K>(f: F) -> FromFn<F>
where
    F: Fn(&RequestParts<'_>) -> Option<K> + Send + Sync + 'static,
    K: Hash,
{
    FromFn { f }
}

/// See [`from_fn`].
#[derive(Clone)]
pub struct FromFn<F> {
    f: F,
}

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromFn")
    }
}

impl<F, K> KeyExtractor for FromFn<F>
where
    F: Fn(&RequestParts<'_>) -> Option<K> + Send + Sync + 'static,
    K: Hash,
{
    fn extract(&self, req: &RequestParts<'_>, key: &mut KeyBuilder) -> Result<(), KeyMissing> {
        let k = (self.f)(req).ok_or(KeyMissing { what: "custom key" })?;
        key.push_hash(&k);
        Ok(())
    }
}
