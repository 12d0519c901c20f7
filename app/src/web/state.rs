//! What every handler and page shares.

use std::sync::Arc;

use tokio::sync::watch;

use crate::wiring::Stack;

/// What every handler shares: the use cases and read models of a wired [`Stack`], and the
/// server's shutdown signal (event streams end on it, so a shutdown never waits for clients).
#[derive(Clone)]
pub struct AppState {
    pub(crate) stack: Stack,
    /// Session cookies carry `Secure` even on plain-HTTP requests (behind a TLS proxy that
    /// does not say `X-Forwarded-Proto: https`).
    pub(crate) secure_cookies: bool,
    shutdown: watch::Receiver<bool>,
    /// Run documents shared by the event streams following the same run.
    pub(crate) run_reads: Arc<super::shared_reads::SharedRunReads>,
    // Keeps the channel of a state without a server's signal open (it never fires).
    _own: Option<Arc<watch::Sender<bool>>>,
}

impl AppState {
    /// The state over a wired stack, for a server that never shuts its streams down (tests
    /// that call the router directly).
    #[must_use]
    pub fn new(stack: Stack) -> Self {
        let (sender, shutdown) = watch::channel(false);
        Self {
            stack,
            secure_cookies: false,
            shutdown,
            run_reads: Arc::default(),
            _own: Some(Arc::new(sender)),
        }
    }

    /// The state over a wired stack; `shutdown` turns `true` when the server stops.
    #[must_use]
    pub fn with_shutdown(stack: Stack, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            stack,
            secure_cookies: false,
            shutdown,
            run_reads: Arc::default(),
            _own: None,
        }
    }

    /// The same state, marking session cookies `Secure` on every request when `secure`.
    #[must_use]
    pub fn with_secure_cookies(mut self, secure: bool) -> Self {
        self.secure_cookies = secure;
        self
    }

    /// Resolves once the server is shutting down (never, for a state without a signal).
    pub(crate) async fn shutting_down(&self) {
        let mut shutdown = self.shutdown.clone();
        if shutdown.wait_for(|stop| *stop).await.is_err() {
            // The server dropped its signal without shutting down: wait for ever.
            std::future::pending::<()>().await;
        }
    }
}
