//! The examples' metrics: `--metrics-addr HOST:PORT` serves every `tower_throttle_*` metric
//! (see `tower_throttle::telemetry`) in Prometheus text at `http://HOST:PORT/metrics`.
//! Needs the crate's `metrics` feature.

/// Installs a Prometheus recorder with its HTTP listener on `addr` (call it before the
/// layers are built: they resolve their metric handles when built). Without the `metrics`
/// feature, exits with a message saying how to run it.
pub fn serve(addr: &str) {
    #[cfg(feature = "metrics")]
    {
        let addr: std::net::SocketAddr = addr.parse().unwrap_or_else(|e| {
            eprintln!("--metrics-addr {addr}: {e}");
            std::process::exit(2)
        });
        use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
        // `_seconds` metrics as Prometheus histograms (else the exporter renders summaries),
        // from 100 µs (a store call) to 60 s (a long pacing or gate wait).
        const BUCKETS: &[f64] = &[
            0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0,
        ];
        let installed = PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .and_then(PrometheusBuilder::install);
        if let Err(e) = installed {
            eprintln!("--metrics-addr {addr}: {e}");
            std::process::exit(2)
        }
        println!("metrics on http://{addr}/metrics");
    }
    #[cfg(not(feature = "metrics"))]
    {
        let _ = addr;
        eprintln!(
            "--metrics-addr needs the metrics feature: \
             cargo run --example clerk_server --features metrics -- --metrics-addr HOST:PORT"
        );
        std::process::exit(2)
    }
}
