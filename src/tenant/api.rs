//! HTTPS to Microsoft's endpoints: one client (rustls, public roots plus the config's extra CA
//! files), bearer tokens from [`super::auth`], bounded responses, and every request counted by
//! API and outcome. (Stub: to be implemented.)

use super::TenantError;
use crate::config::TenantConfig;
use std::time::Duration;

/// Which API a request went to (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiName {
    Token,
    MessageTrace,
    MessageTraceDetails,
    AdminApi,
}

impl ApiName {
    pub const ALL: [ApiName; 4] = [
        ApiName::Token,
        ApiName::MessageTrace,
        ApiName::MessageTraceDetails,
        ApiName::AdminApi,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiName::Token => "token",
            ApiName::MessageTrace => "message_trace",
            ApiName::MessageTraceDetails => "message_trace_details",
            ApiName::AdminApi => "admin_api",
        }
    }
}

/// How a request ended (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    Throttled,
    Unauthorized,
    Forbidden,
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Throttled,
        Outcome::Unauthorized,
        Outcome::Forbidden,
        Outcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Throttled => "throttled",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Forbidden => "forbidden",
            Outcome::Error => "error",
        }
    }
}

/// Why a call to Microsoft failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("throttled (429); retry after {}", humantime::format_duration(*retry_after))]
    Throttled { retry_after: Duration },
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("forbidden (missing permission or role?): {0}")]
    Forbidden(String),
    #[error("HTTP {status}: {detail}")]
    Status { status: u16, detail: String },
    #[error("cannot reach {0}")]
    Transport(String),
    #[error("unexpected response: {0}")]
    BadResponse(String),
    #[error("token: {0}")]
    Token(String),
}

impl ApiError {
    /// The outcome label this error counts as.
    pub fn outcome(&self) -> Outcome {
        match self {
            ApiError::Throttled { .. } => Outcome::Throttled,
            ApiError::Unauthorized(_) => Outcome::Unauthorized,
            ApiError::Forbidden(_) => Outcome::Forbidden,
            _ => Outcome::Error,
        }
    }
}

pub struct Api {
    _private: (),
}

impl Api {
    pub fn new(_cfg: &TenantConfig, _extra_ca: &[(String, Vec<u8>)]) -> Result<Api, TenantError> {
        Ok(Api { _private: () })
    }

    pub fn requests(&self) -> Vec<((ApiName, Outcome), u64)> {
        Vec::new()
    }
}
