//! Authentication, written once: how an API token is generated, what a well-formed token is,
//! how it is hashed for storage, and how a presented token becomes a [`Caller`].
//!
//! Tokens are stored only as their SHA-256 (hex); the clear text is shown once, when it is
//! issued. The model is crates.io's `SecureToken`: a fixed prefix that says what the string is,
//! 32 random bytes, and a hash that is all the store ever sees.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::StoreError;
use crate::access::Caller;
use crate::ports::Tokens;

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
        Self(format!("{TOKEN_PREFIX}{}", hex(&entropy)))
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
/// why (malformed, unknown and revoked look the same).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No valid token.
    #[error("a valid API token is required")]
    Unauthorized,
    /// The token store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Turns a presented token into the [`Caller`] it stands for.
#[derive(Clone)]
pub struct Authenticate {
    tokens: Arc<dyn Tokens>,
}

impl fmt::Debug for Authenticate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticate").finish_non_exhaustive()
    }
}

impl Authenticate {
    /// The use case over the token store.
    #[must_use]
    pub fn new(tokens: Arc<dyn Tokens>) -> Self {
        Self { tokens }
    }

    /// The caller `presented` (a header value, cookie or form field) stands for.
    ///
    /// # Errors
    ///
    /// [`AuthError::Unauthorized`] for a malformed, unknown or revoked token;
    /// [`AuthError::Store`] when the store fails.
    pub async fn execute(&self, presented: &str) -> Result<Caller, AuthError> {
        let token = PlainToken::parse(presented).ok_or(AuthError::Unauthorized)?;
        let owner = self
            .tokens
            .token_owner(&token.hash())
            .await?
            .ok_or(AuthError::Unauthorized)?;
        Ok(Caller {
            user: owner.user,
            role: owner.role,
            scope: owner.scope,
        })
    }
}

#[cfg(test)]
mod tests {
    use opsrun_domain::{UserId, WorkspaceId};

    use super::*;
    use crate::ports::{MockTokens, Role, TenantScope, TokenOwner, User};

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

    #[tokio::test]
    async fn a_known_token_is_its_owner_and_a_malformed_one_never_reaches_the_store() {
        let mut tokens = MockTokens::new();
        tokens.expect_token_owner().times(1).returning(|_| {
            Ok(Some(TokenOwner {
                user: User {
                    id: UserId::new(3),
                    workspace: WorkspaceId::new(1),
                    email: "a@b.c".into(),
                },
                role: Role::Operator,
                scope: TenantScope::All,
            }))
        });
        let auth = Authenticate::new(Arc::new(tokens));

        let caller = auth.execute("ops_good").await.unwrap();
        let refused = auth.execute("bad token").await;

        assert_eq!(caller.user.id, UserId::new(3));
        assert_eq!(caller.role, Role::Operator);
        assert!(matches!(refused, Err(AuthError::Unauthorized)));
    }
}
