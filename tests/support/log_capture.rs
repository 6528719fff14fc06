//! A `tracing` subscriber for tests: keeps each event's level, target and message.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// One captured event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub level: Level,
    pub target: String,
    pub message: String,
    /// Every other field, as `name=value`, in order.
    pub fields: Vec<String>,
    /// The span the event happened in: its name and fields (`attempt attempt=2 ...`).
    pub span: Option<String>,
}

impl Line {
    /// The value of field `name`, as recorded.
    pub fn field(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}=");
        self.fields
            .iter()
            .find_map(|f| f.strip_prefix(prefix.as_str()))
    }
}

/// The lines captured so far (shared with the subscriber).
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<Line>>>);

impl Captured {
    pub fn lines(&self) -> Vec<Line> {
        self.0.lock().unwrap().clone()
    }

    /// Lines at `level` whose target starts with `target`.
    pub fn at(&self, level: Level, target: &str) -> Vec<Line> {
        self.lines()
            .into_iter()
            .filter(|l| l.level == level && l.target.starts_with(target))
            .collect()
    }
}

struct Capture(Captured);

#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields.push(format!("{}={value:?}", field.name()));
        }
    }
}

/// A span's name and fields, kept in its extensions.
struct SpanText(String);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let text = std::iter::once(attrs.metadata().name().to_owned())
            .chain(fields.fields)
            .collect::<Vec<_>>()
            .join(" ");
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanText(text));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let span = ctx
            .event_span(event)
            .and_then(|s| s.extensions().get::<SpanText>().map(|t| t.0.clone()));
        self.0 .0.lock().unwrap().push(Line {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message: fields.message,
            fields: fields.fields,
            span,
        });
    }
}

/// Captures every event (all levels) on this thread until the guard drops: use it in a
/// `current_thread` test.
pub fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry().with(Capture(captured.clone()));
    let guard = tracing::subscriber::set_default(subscriber);
    (captured, guard)
}
