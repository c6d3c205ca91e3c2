//! The one mapping of a datasource link's errors to the contract's `error`.

use crate::datasource::LinkError;
use crate::runtime::WitError;

impl From<LinkError> for WitError {
    fn from(e: LinkError) -> WitError {
        match e {
            // Retrying later may work: the backend is slow, away, or failed this once.
            LinkError::Full(m) | LinkError::Backend(m) => WitError::Unavailable(m),
            // Nothing will go through this link again.
            LinkError::Closed(m) => WitError::Other(m),
            LinkError::Invalid(m) => WitError::Invalid(m),
        }
    }
}
