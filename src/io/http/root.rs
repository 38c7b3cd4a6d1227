//! A root's endpoints of the local API: `GET /metrics` ([`super::metrics::root_page`]);
//! `GET /health` comes with [`super::router`]. The root's packet loop publishes its
//! counters on a watch channel after every batch; the handler reads the latest, so a
//! scrape never waits for the packet loop.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use tokio::sync::watch;

use super::metrics;
use crate::root::RootStats;

/// What the packet loop publishes: the counters and the number of nodes known.
pub type RootReport = (RootStats, usize);

/// The root endpoints, to be merged under [`super::router`] (which adds the token check).
pub fn routes(report: watch::Receiver<RootReport>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_page))
        .with_state(report)
}

async fn metrics_page(
    State(report): State<watch::Receiver<RootReport>>,
    headers: HeaderMap,
) -> Response {
    let (stats, nodes) = *report.borrow();
    let counters: Vec<_> = stats.iter().collect();
    metrics::root_page(metrics::Format::from_headers(&headers), &counters, nodes).into_response()
}
