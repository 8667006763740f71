//! Vaarta sync core.
pub mod codec;
pub mod compress;
pub mod crypto;
pub mod envelope;
pub mod hlc;
pub mod identity;
pub mod ids;
pub mod limits;
pub mod page;
pub mod sample;
