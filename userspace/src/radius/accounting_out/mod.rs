//! RADIUS accounting out: quid's exact per-subscriber octets sent to the ISP's accounting
//! server (billing) as Accounting-Start, Interim-Update and Stop. What to send when
//! (`sessions`) is apart from the wire and its retransmissions (`client`), so each can be
//! tested alone; the daemon runs both on a thread of their own, fed once per interval.

pub mod client;
pub mod config;
pub mod outcome;
pub mod sessions;
