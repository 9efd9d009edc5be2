//! The status page and its JSON twin: [`view`] builds a view model from the agent's state,
//! [`page`] renders it as one HTML document.

pub mod page;
pub mod view;

pub use page::CONTENT_TYPE;
pub use view::{json, render};
