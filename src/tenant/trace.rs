//! Graph message trace: pending messages, attributed to connectors by recipient domain, and the
//! defer reasons of the oldest within a budget. (Stub: to be implemented.)

use super::api::{Api, ApiError};
use super::{QueueRoute, QueueView};
use std::time::{Duration, SystemTime};

/// Detail requests allowed in any 5 minutes.
pub struct DetailBudget {
    _per_5min: u32,
}

impl DetailBudget {
    pub fn new(per_5min: u32) -> DetailBudget {
        DetailBudget { _per_5min: per_5min }
    }
}

/// Defer reasons already fetched, by message trace id.
#[derive(Default)]
pub struct DetailCache {}

pub async fn poll(
    _api: &Api,
    _budget: &DetailBudget,
    _cache: &DetailCache,
    _routes: &[QueueRoute],
    _window: Duration,
    _now: SystemTime,
) -> Result<QueueView, ApiError> {
    Err(ApiError::Transport("message trace is not implemented yet".into()))
}
