//! One row of `bench/node.json`, as the node agent's measures (`node.rs`) and the storage
//! audit's real path (`audit_path.rs`) both write it.

use serde::Serialize;

/// One row of `bench/node.json`.
#[derive(Serialize)]
pub(crate) struct Row {
    pub measure: &'static str,
    pub value: f64,
    pub unit: &'static str,
}
