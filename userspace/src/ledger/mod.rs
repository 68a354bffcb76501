//! The books of account: hash-chained ledger entries in micro-credits, the tariff that prices
//! traffic and contributions, and signed monthly statements.

pub mod chain;
pub mod checkpoint;
pub mod period;
pub mod statement;
pub mod statement_issue;
pub mod tariff;
