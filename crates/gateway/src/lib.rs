//! placeholder
pub mod resp;
