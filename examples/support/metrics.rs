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
        if let Err(e) = metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
        {
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
