//! Results of the bench binaries that do not use criterion, written as JSON under
//! `target/bench-results/` for `benches/report.py`, which prints the one table of ratios.

use std::path::PathBuf;

/// One measured comparison: ours vs a named peer, in one unit, in one run.
pub struct Row<'a> {
    /// What was measured.
    pub metric: &'a str,
    /// tower-throttle's figure.
    pub ours: f64,
    /// The peer's figure.
    pub peer: f64,
    /// Who the peer is.
    pub peer_name: &'a str,
    /// Unit of both figures.
    pub unit: &'a str,
    /// The largest acceptable ours / peer ratio, if the issue sets one.
    pub max_ratio: Option<f64>,
    /// The largest acceptable figure of ours, if the issue sets one.
    pub max_ours: Option<f64>,
}

fn results_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("bench-results")
}

/// Writes `rows` to `target/bench-results/<bench>.json`, replacing earlier results.
pub fn record(bench: &str, rows: &[Row<'_>]) {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "metric": r.metric,
                "ours": r.ours,
                "peer": r.peer,
                "peer_name": r.peer_name,
                "unit": r.unit,
                "max_ratio": r.max_ratio,
                "max_ours": r.max_ours,
            })
        })
        .collect();
    let dir = results_dir();
    let path = dir.join(format!("{bench}.json"));
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&rows).unwrap_or_default(),
        )
    });
    match written {
        Ok(()) => println!("results written to {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}
