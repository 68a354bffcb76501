//! Live address bindings: the addresses a RADIUS accounting session or a DHCP lease hands a
//! subscriber, laid over the subscriber table and installed like a table change.
//!
//! A source turns what it hears into [`request::BindingEvent`]s and sends them through a
//! [`request::BindingSender`]; the daemon keeps the live [`set::Bindings`], lays them over the
//! table file ([`set::Bindings::overlay`]) and answers each request once the kernel counts by
//! it.

pub mod counts;
pub mod dhcp;
pub mod request;
pub mod set;
