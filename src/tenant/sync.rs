//! The Exchange Online admin API (`InvokeCommand`): `Get-OutboundConnector`,
//! `Get-TransportConfig`, `Get-AcceptedDomain`. (Stub: to be implemented.)

use super::SyncView;
use super::api::{Api, ApiError};
use std::time::SystemTime;

pub async fn read(_api: &Api, _now: SystemTime) -> Result<SyncView, ApiError> {
    Err(ApiError::Transport("the admin API is not implemented yet".into()))
}
