//! Reading the gateway's Prometheus metrics (`GET /metrics`).

use super::Gateway;

impl Gateway {
    /// The text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .expect("metrics answered")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of `series` (name and labels as exposed, e.g.
    /// `bifrost_gossip_packets_dropped_total{reason="auth"}`), `None` while the series does not
    /// exist.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&self.metrics().await, series)
    }
}

/// The value of `series` (name and labels exactly as exposed) in metrics `text`, if present.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}
