//! The cluster adapter of this node: the [`Adapter`] (load, operations, cluster
//! requests and what their answers mean), the guest instance it calls, the dispatcher
//! that pushes the node's events into it in order, hot swap, the packet codec, and the
//! socketioxide bridge ([`WasmAdapter`]).

mod adapter;
mod answers;
mod bridge;
pub(crate) mod codec;
mod component;
mod dispatch;
mod guest;
mod swap;

pub use adapter::{Adapter, PartialAcks};
pub use answers::RequestError;
pub use bridge::{Error, WasmAdapter};
pub use guest::GuestError;
pub use swap::{AdapterStatus, ComponentSummary, SwapError, SwapReport};
