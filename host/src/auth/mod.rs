//! Who may connect, join and publish on `wasio serve`: the token check
//! ([`jwt`]), the rights its claims grant ([`rights`]), the policy component
//! ([`policy`]) and what one connection may cost ([`limits`]). [`Gate`] puts them
//! in the order the server asks.

pub mod policy;

pub use policy::{ConnectRequest, Policy, PolicyStatus, SocketView, Verdict};
