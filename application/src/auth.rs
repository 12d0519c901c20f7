//! Authentication, written once: how an API token is generated, what a well-formed token is,
//! how it is hashed for storage, and how a presented token becomes a [`Caller`].
//!
//! Tokens are stored only as their SHA-256 (hex); the clear text is shown once, when it is
//! issued. The model is crates.io's `SecureToken`: a fixed prefix that says what the string is,
//! 32 random bytes, and a hash that is all the store ever sees.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use opsrun_domain::Timestamp;

use sha2::{Digest, Sha256};

use crate::StoreError;
use crate::access::{Caller, Via};
use crate::ports::{Clock, Entropy, NewSession, SessionOwner, TokenOwner, Tokens};

/// The prefix of every opsrun API token (so a leaked one is recognisable in logs and scans).
pub const TOKEN_PREFIX: &str = "ops_";
/// Longest string accepted as a presented token; anything longer is refused unread.
pub const MAX_TOKEN_LEN: usize = 200;
/// Random bytes in a generated token.
pub const TOKEN_BYTES: usize = 32;

/// A token in the clear: shown once when issued, never stored, never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainToken(String);

impl fmt::Debug for PlainToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlainToken(***)")
    }
}

impl PlainToken {
    /// A new token from `entropy` (which must come from a secure random source).
    ///
    /// ```
    /// use opsrun_application::auth::PlainToken;
    /// let token = PlainToken::generate([7; 32]);
    /// assert!(token.expose().starts_with("ops_"));
    /// assert_eq!(token.expose().len(), 4 + 64);
    /// ```
    #[must_use]
    pub fn generate(entropy: [u8; TOKEN_BYTES]) -> Self {
        Self::generate_with(TOKEN_PREFIX, entropy)
    }

    fn generate_with(prefix: &str, entropy: [u8; TOKEN_BYTES]) -> Self {
        Self(format!("{prefix}{}", hex(&entropy)))
    }

    /// A presented token, if it is well-formed: after trimming, 1 to [`MAX_TOKEN_LEN`]
    /// printable ASCII characters. The one validity rule for the API header, the page cookie
    /// and the login form.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let well_formed = !text.is_empty()
            && text.len() <= MAX_TOKEN_LEN
            && text.chars().all(|c| c.is_ascii_graphic());
        well_formed.then(|| Self(text.to_owned()))
    }

    /// The clear text, to show once or to send.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the store keeps.
    #[must_use]
    pub fn hash(&self) -> TokenHash {
        TokenHash(hex(&Sha256::digest(self.0.as_bytes())))
    }
}

/// The SHA-256 (lowercase hex) of a token: the only form a store holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl TokenHash {
    /// A hash read back from storage.
    #[must_use]
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    /// The hex text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// The CSRF token of a page session held by `session`: only someone holding the session token
/// can compute it, and it is never the token itself.
#[must_use]
pub fn csrf_token(session: &str) -> String {
    hex(&Sha256::digest(format!("opsrun-csrf:{session}").as_bytes()))
}

/// Why a presented token was refused. Deliberately one variant: a caller learns nothing about
/// why (malformed, unknown, expired and revoked look the same).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No valid token.
    #[error("a valid API token is required")]
    Unauthorized,
    /// The token store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The prefix of a page session secret (the cookie value), distinct from API tokens'.
pub const SESSION_PREFIX: &str = "opss_";
/// A session unused for this long ends (GitHub-like idle expiry).
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// A session ends this long after login, used or not.
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// `last_used_at` / `last_seen_at` are written at most this often per token or session.
pub const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// A page session just opened: its secret goes into the cookie, once.
#[derive(Debug, Clone)]
pub struct OpenedSession {
    /// The session secret (the cookie value).
    pub secret: PlainToken,
    /// Who logged in.
    pub caller: Caller,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The one lifetime rule of a token: it works until it expires (if it expires).
fn token_alive(owner: &TokenOwner, now: Timestamp) -> bool {
    unexpired(owner.expires_at, now)
}

/// Whether a token that ends at `expires_at` (never, for `None`) still works at `now`.
#[must_use]
pub fn unexpired(expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    expires_at.is_none_or(|end| now < end)
}

/// The one lifetime rule of a session: its token alive, used within [`SESSION_IDLE`], opened
/// within [`SESSION_MAX_AGE`].
fn session_alive(session: &SessionOwner, now: Timestamp) -> bool {
    token_alive(&session.owner, now)
        && now.millis_since(session.last_seen_at) < millis(SESSION_IDLE)
        && now.millis_since(session.created_at) < millis(SESSION_MAX_AGE)
}

fn stale(last: Option<Timestamp>, now: Timestamp) -> bool {
    last.is_none_or(|at| now.millis_since(at) >= millis(TOUCH_EVERY))
}

/// Turns a presented token or session secret into the [`Caller`] it stands for, opens and
/// closes page sessions, and re-checks a caller for long-lived streams.
#[derive(Clone)]
pub struct Authenticate {
    tokens: Arc<dyn Tokens>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
}

impl fmt::Debug for Authenticate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticate").finish_non_exhaustive()
    }
}

impl Authenticate {
    /// The use case over the token store, a clock (expiry) and randomness (session secrets).
    #[must_use]
    pub fn new(tokens: Arc<dyn Tokens>, clock: Arc<dyn Clock>, entropy: Arc<dyn Entropy>) -> Self {
        Self {
            tokens,
            clock,
            entropy,
        }
    }

    /// The caller an API token (a header value or the login form) stands for.
    ///
    /// # Errors
    ///
    /// [`AuthError::Unauthorized`] for a malformed, unknown, expired or revoked token;
    /// [`AuthError::Store`] when the store fails.
    pub async fn execute(&self, presented: &str) -> Result<Caller, AuthError> {
        let token = PlainToken::parse(presented).ok_or(AuthError::Unauthorized)?;
        let owner = self
            .tokens
            .token_owner(&token.hash())
            .await?
            .ok_or(AuthError::Unauthorized)?;
        let now = self.clock.now();
        if !token_alive(&owner, now) {
            return Err(AuthError::Unauthorized);
        }
        if stale(owner.last_used_at, now) {
            self.tokens.touch_token(owner.token, now).await?;
        }
        let via = Via::Token(owner.token);
        Ok(caller(owner, via))
    }

    /// Logs in with an API token: a new server-side session bound to it.
    ///
    /// # Errors
    ///
    /// As [`Self::execute`].
    pub async fn login(&self, presented: &str) -> Result<OpenedSession, AuthError> {
        let caller = self.execute(presented).await?;
        let Via::Token(token) = caller.via else {
            return Err(AuthError::Unauthorized);
        };
        let secret = PlainToken::generate_with(SESSION_PREFIX, self.entropy.bytes()?);
        let hash = secret.hash();
        self.tokens
            .add_session(NewSession {
                hash: hash.clone(),
                token,
                at: self.clock.now(),
            })
            .await?;
        Ok(OpenedSession {
            secret,
            caller: Caller {
                via: Via::Session {
                    token,
                    session: hash,
                },
                ..caller
            },
        })
    }

    /// The caller a page session secret (the cookie value) stands for. An expired session is
    /// deleted.
    ///
    /// # Errors
    ///
    /// [`AuthError::Unauthorized`] for an unknown, expired or logged-out session, or one whose
    /// token expired or was revoked; [`AuthError::Store`].
    pub async fn session(&self, presented: &str) -> Result<Caller, AuthError> {
        let secret = PlainToken::parse(presented)
            .filter(|s| s.expose().starts_with(SESSION_PREFIX))
            .ok_or(AuthError::Unauthorized)?;
        let hash = secret.hash();
        let session = self
            .tokens
            .session_owner(&hash)
            .await?
            .ok_or(AuthError::Unauthorized)?;
        let now = self.clock.now();
        if !session_alive(&session, now) {
            self.tokens.delete_session(&hash).await?;
            return Err(AuthError::Unauthorized);
        }
        if stale(Some(session.last_seen_at), now) {
            self.tokens.touch_session(&hash, now).await?;
        }
        let via = Via::Session {
            token: session.owner.token,
            session: hash,
        };
        Ok(caller(session.owner, via))
    }

    /// Ends a page session (logout). An unknown secret is no error: the result is the same.
    ///
    /// # Errors
    ///
    /// [`AuthError::Store`].
    pub async fn logout(&self, presented: &str) -> Result<(), AuthError> {
        if let Some(secret) = PlainToken::parse(presented) {
            self.tokens.delete_session(&secret.hash()).await?;
        }
        Ok(())
    }

    /// Whether `caller` still holds: its token not revoked or expired, its session not ended.
    /// A long-lived stream asks this at least every 30 s.
    ///
    /// # Errors
    ///
    /// [`AuthError::Store`].
    pub async fn still_valid(&self, caller: &Caller) -> Result<bool, AuthError> {
        let now = self.clock.now();
        Ok(match &caller.via {
            Via::Local => true,
            Via::Token(id) => self
                .tokens
                .token_by_id(*id)
                .await?
                .is_some_and(|owner| token_alive(&owner, now)),
            Via::Session { session, .. } => self
                .tokens
                .session_owner(session)
                .await?
                .is_some_and(|s| session_alive(&s, now)),
        })
    }
}

fn caller(owner: TokenOwner, via: Via) -> Caller {
    Caller {
        user: owner.user,
        role: owner.role,
        scope: owner.scope,
        via,
    }
}

#[cfg(test)]
mod tests {
    use opsrun_domain::{UserId, WorkspaceId};

    use super::*;
    use crate::memory::MemoryRunStore;
    use crate::ports::{NewToken, Role, TenantScope, TokenId};
    use crate::testing::ManualClock;

    #[test]
    fn a_token_hashes_to_its_sha256_hex() {
        let token = PlainToken::parse("abc").unwrap();

        assert_eq!(
            token.hash().as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn malformed_tokens_are_not_tokens() {
        let long = "x".repeat(MAX_TOKEN_LEN + 1);

        for bad in ["", "   ", "ops_a b", "ops_\u{e9}", long.as_str()] {
            assert!(PlainToken::parse(bad).is_none(), "{bad:?}");
        }
        assert_eq!(PlainToken::parse(" ops_1 ").unwrap().expose(), "ops_1");
    }

    #[test]
    fn the_clear_text_never_reaches_debug() {
        let token = PlainToken::generate([1; TOKEN_BYTES]);

        assert_eq!(format!("{token:?}"), "PlainToken(***)");
    }

    /// Distinct bytes on every call (a secure source in production).
    #[derive(Default)]
    struct CountingEntropy(std::sync::atomic::AtomicU8);

    impl Entropy for CountingEntropy {
        fn bytes(&self) -> Result<[u8; 32], StoreError> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok([n; 32])
        }
    }

    struct World {
        store: Arc<MemoryRunStore>,
        clock: Arc<ManualClock>,
        auth: Authenticate,
        user: UserId,
    }

    fn world() -> World {
        let store = Arc::new(MemoryRunStore::new());
        let clock = Arc::new(ManualClock::at(1_000_000));
        let user = store.add_user(WorkspaceId::new(1), "a@b.c").id;
        let auth = Authenticate::new(
            store.clone(),
            clock.clone(),
            Arc::new(CountingEntropy::default()),
        );
        World {
            store,
            clock,
            auth,
            user,
        }
    }

    async fn issue(w: &World, secret: &str, expires_at: Option<Timestamp>) -> TokenId {
        w.store
            .add_token(NewToken {
                user: w.user,
                hash: PlainToken::parse(secret).unwrap().hash(),
                role: Role::Operator,
                scope: TenantScope::All,
                at: w.clock.now(),
                expires_at,
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_known_token_is_its_owner_and_malformed_unknown_or_expired_ones_are_refused() {
        let w = world();
        let id = issue(&w, "ops_good", None).await;
        let soon = Timestamp::from_millis(w.clock.now().as_millis() + 5_000);
        issue(&w, "ops_short", Some(soon)).await;

        let caller = w.auth.execute("ops_good").await.unwrap();
        assert_eq!(caller.user.id, w.user);
        assert_eq!(caller.role, Role::Operator);
        assert_eq!(caller.via, Via::Token(id));
        assert!(w.auth.execute("ops_short").await.is_ok());
        w.clock.advance(5_000);
        for refused in ["bad token", "ops_unknown", "ops_short"] {
            assert!(
                matches!(w.auth.execute(refused).await, Err(AuthError::Unauthorized)),
                "{refused}"
            );
        }
    }

    #[tokio::test]
    async fn last_used_is_written_at_most_once_a_minute() {
        let w = world();
        let id = issue(&w, "ops_good", None).await;
        let last_used = || async { w.store.token_by_id(id).await.unwrap().unwrap().last_used_at };

        w.auth.execute("ops_good").await.unwrap();
        let first = last_used().await;
        w.clock.advance(59_000);
        w.auth.execute("ops_good").await.unwrap();
        let within_the_minute = last_used().await;
        w.clock.advance(1_000);
        w.auth.execute("ops_good").await.unwrap();
        let after_the_minute = last_used().await;

        assert!(first.is_some());
        assert_eq!(within_the_minute, first);
        assert!(after_the_minute > first);
    }

    #[tokio::test]
    async fn a_session_works_until_logout_revocation_or_expiry_and_is_not_a_token() {
        let w = world();
        let id = issue(&w, "ops_good", None).await;

        let opened = w.auth.login("ops_good").await.unwrap();
        let secret = opened.secret.expose().to_owned();
        assert!(secret.starts_with(SESSION_PREFIX));
        assert_ne!(secret, "ops_good");
        let caller = w.auth.session(&secret).await.unwrap();
        assert_eq!(caller, opened.caller);
        assert!(w.auth.still_valid(&caller).await.unwrap());
        // A session secret is no API token, and a token is no session.
        assert!(w.auth.execute(&secret).await.is_err());
        assert!(w.auth.session("ops_good").await.is_err());

        w.auth.logout(&secret).await.unwrap();
        assert!(w.auth.session(&secret).await.is_err());
        assert!(!w.auth.still_valid(&caller).await.unwrap());

        let again = w.auth.login("ops_good").await.unwrap();
        let token_caller = w.auth.execute("ops_good").await.unwrap();
        w.store
            .revoke_token(None, id, w.clock.now())
            .await
            .unwrap()
            .unwrap();
        assert!(w.auth.session(again.secret.expose()).await.is_err());
        assert!(w.auth.execute("ops_good").await.is_err());
        assert!(!w.auth.still_valid(&token_caller).await.unwrap());
    }

    #[tokio::test]
    async fn an_idle_session_ends_and_a_used_one_ends_at_its_absolute_age() {
        let w = world();
        issue(&w, "ops_good", None).await;
        let idle = w.auth.login("ops_good").await.unwrap();
        let busy = w.auth.login("ops_good").await.unwrap();
        let hour = 3_600_000;

        // `busy` is used every 6 hours, `idle` never again.
        for _ in 0..2 {
            w.clock.advance(6 * hour);
            w.auth.session(busy.secret.expose()).await.unwrap();
        }
        assert!(w.auth.session(idle.secret.expose()).await.is_err());
        // Used every 6 hours it works up to its 7-day age (12 h so far), and not after.
        for _ in 0..25 {
            w.clock.advance(6 * hour);
            assert!(w.auth.session(busy.secret.expose()).await.is_ok());
        }
        w.clock.advance(6 * hour);
        assert!(w.auth.session(busy.secret.expose()).await.is_err());
    }
}
