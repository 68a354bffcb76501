//! Several routers, one set of books: what a router needs to know to ship its books to the
//! shared settlement store (PostgreSQL) and to show how far it got. The router stays
//! autonomous: it meters and acknowledges into its local store, which is its durable outbox;
//! a separate shipper (`daemon/shipping.rs`) moves sealed batches, keyed by (router id,
//! sequence), into the shared store, where `store/shared/` applies each exactly once.

pub mod config;
pub mod stats;
pub mod tables;
