//! A `tracing` subscriber for tests: keeps each event's level, target and message.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// One captured event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub level: Level,
    pub target: String,
    pub message: String,
    /// Every other field, as `name=value`, in order.
    pub fields: Vec<String>,
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

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.0 .0.lock().unwrap().push(Line {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message: fields.message,
            fields: fields.fields,
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
