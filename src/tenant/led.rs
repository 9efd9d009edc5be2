//! Microsoft's defer reason lines (`Reason: [{LED=450 4.4.316 Connection refused [...]};...]`),
//! parsed defensively into a [`super::DeferReason`]. (Stub: to be implemented.)

use super::DeferReason;

/// None when the text holds no recognisable reason; never panics on any input.
pub fn parse(_text: &str) -> Option<DeferReason> {
    None
}
