//! OCI registries (the distribution API): manifests, lazy blob reads by
//! HTTP Range, uploads.
//!
//! - [`auth`]: credentials and `WWW-Authenticate` challenges;
//! - [`client`]: one registry's client ([`Registry`]).

pub mod auth;
pub mod client;

pub use auth::Credentials;
pub use client::{Registry, RemoteOptions};
