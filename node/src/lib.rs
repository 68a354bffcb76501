//! quid-node: the agent on a subscriber's device that measures what the device gives the
//! grid (CPU from a cgroup, energy from RAPL or a metering plug, storage as an allocated
//! reservation, grid bytes from the grid interface) and reports it to the quid router, one
//! signed report per period, through a durable outbox.

pub mod agent;
pub mod auditor;
pub mod backoff;
pub mod config;
pub mod counter;
pub mod cpu;
pub mod energy;
pub mod fill;
pub mod grid;
pub mod meters;
pub mod outbox;
pub mod period;
pub mod status;
pub mod storage;
