//! The contribution report a node sends to the router, shared by both ends: the format and
//! its signature (`report`), the one clock both use (`clock`), the node's key file (`key`), exact decimal figures (`decimal`),
//! one delivery attempt with its classified answer (`delivery`), and the storage audit both
//! ends run (`audit`, what it earns: `audit_score`, the signed requests that carry it:
//! `audit_request`).

pub mod audit;
pub mod audit_request;
pub mod audit_score;
pub mod clock;
pub mod decimal;
pub mod delivery;
pub mod key;
pub mod report;
