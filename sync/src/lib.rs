//! Vaarta sync core.
pub mod codec;
pub mod compress;
pub mod conversation;
pub mod crypto;
pub mod envelope;
pub mod hlc;
pub mod identity;
pub mod ids;
pub mod limits;
pub mod membership;
pub mod org;
pub mod page;
pub mod recon;
pub mod replica;
pub mod sample;
pub mod store;
pub mod wirechange;
