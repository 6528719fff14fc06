//! A tracing capture for the Redis tests: the transitions (`"lost"`, `"back"`) and
//! eviction-policy findings (`"may_evict"`, `"safe"`, `"unknown"`) each store logged, by key
//! prefix.

/// Every `(prefix, transition)` the stores of this test binary logged (`"lost"`, `"back"`).
/// One global subscriber for the whole binary: a scoped one (`set_default`) can miss events
/// when tests on other threads hit the same callsites first.
static TRANSITIONS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

struct Capture;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        #[derive(Default)]
        struct Fields {
            prefix: String,
            transition: Option<String>,
        }
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                // Transitions ("lost", "back") and eviction-policy findings ("may_evict",
                // "safe", "unknown").
                if field.name() == "transition" || field.name() == "policy_check" {
                    self.transition = Some(value.to_owned());
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "prefix" {
                    self.prefix = format!("{value:?}");
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(t) = fields.transition {
            TRANSITIONS.lock().unwrap().push((fields.prefix, t));
        }
    }
}

/// How many times the store with key prefix `prefix` logged `transition`.
pub fn transitions(prefix: &str, transition: &str) -> usize {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        use tracing_subscriber::layer::SubscriberExt;
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture))
            .expect("the only global subscriber of this binary");
    });
    TRANSITIONS
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, t)| p == prefix && t == transition)
        .count()
}
