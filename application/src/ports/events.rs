//! Change notifications for live progress surfaces.

use opsrun_domain::RunId;

/// Told after every change the service made to a run, so live surfaces (server-sent events)
/// re-read it instead of polling. Must not block; a lost notification only delays a surface.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait RunEvents: Send + Sync {
    /// Run `run` changed.
    fn changed(&self, run: RunId);
}
