//! What every handler and page shares.

use crate::wiring::Stack;

/// What every handler shares: the use cases and read models of a wired [`Stack`].
#[derive(Clone)]
pub struct AppState {
    pub(crate) stack: Stack,
}

impl AppState {
    /// The state over a wired stack.
    #[must_use]
    pub fn new(stack: Stack) -> Self {
        Self { stack }
    }
}
