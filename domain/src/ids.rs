//! Identifiers and small validated values.

use std::fmt;

use crate::InvalidValue;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(i64);

        impl $name {
            /// Wraps a storage-assigned id.
            #[must_use]
            pub const fn new(value: i64) -> Self {
                Self(value)
            }

            /// The raw id.
            #[must_use]
            pub const fn value(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_newtype!(
    /// Id of an operation run.
    RunId
);
id_newtype!(
    /// Id of a workspace (one MSP customer account holding tenants and users).
    WorkspaceId
);
id_newtype!(
    /// Id of a tenant inside a workspace.
    TenantId
);
id_newtype!(
    /// Id of a user inside a workspace.
    UserId
);

/// A workspace or tenant slug: lowercase letters, digits and `-`, 1 to 63 characters, starting
/// with a letter.
///
/// ```
/// use opsrun_domain::Slug;
/// assert_eq!(Slug::parse("contoso-eu").unwrap().as_str(), "contoso-eu");
/// assert!(Slug::parse("Contoso").is_err());
/// assert!(Slug::parse("1st").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slug(String);

impl Slug {
    /// Validates a slug.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] when the text breaks the slug rule.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let invalid = |reason: &str| InvalidValue::new("slug", reason);
        if text.is_empty() || text.len() > 63 {
            return Err(invalid("must be 1 to 63 characters"));
        }
        if !text.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(invalid("must start with a lowercase letter"));
        }
        if !text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(invalid("may hold only lowercase letters, digits and '-'"));
        }
        Ok(Self(text.to_owned()))
    }

    /// The slug text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The stable key of one unit of work inside a run (a policy type, a section, a backup-set item).
/// 1 to 200 characters, no control characters and no surrounding whitespace.
///
/// ```
/// use opsrun_domain::ItemKey;
/// assert_eq!(ItemKey::parse("policy-17").unwrap().as_str(), "policy-17");
/// assert!(ItemKey::parse("").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemKey(std::borrow::Cow<'static, str>);

/// Longest item key, in bytes.
const MAX_ITEM_KEY_LEN: usize = 200;

impl ItemKey {
    /// A built-in item key of printable ASCII, checked while compiling when used in a `const`.
    /// Use [`ItemKey::parse`] for keys from input.
    #[must_use]
    pub const fn from_static(key: &'static str) -> Self {
        let bytes = key.as_bytes();
        assert!(
            !bytes.is_empty() && bytes.len() <= MAX_ITEM_KEY_LEN,
            "built-in item key length"
        );
        assert!(
            bytes[0] != b' ' && bytes[bytes.len() - 1] != b' ',
            "built-in item key padding"
        );
        let mut i = 0;
        while i < bytes.len() {
            assert!(
                bytes[i] >= 0x20 && bytes[i] < 0x7f,
                "built-in item key must be printable ascii"
            );
            i += 1;
        }
        Self(std::borrow::Cow::Borrowed(key))
    }

    /// Validates an item key.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] when the key is empty, too long, has control characters or
    /// surrounding whitespace.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let invalid = |reason: &str| InvalidValue::new("item key", reason);
        if text.is_empty() || text.len() > MAX_ITEM_KEY_LEN {
            return Err(invalid("must be 1 to 200 bytes"));
        }
        if text.chars().any(char::is_control) {
            return Err(invalid("must not contain control characters"));
        }
        if text.trim() != text {
            return Err(invalid("must not start or end with whitespace"));
        }
        Ok(Self(std::borrow::Cow::Owned(text.to_owned())))
    }

    /// The key text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stable machine-readable reason, dotted snake case such as `restore.item_failed` or
/// `run.stale`; 1 to 64 characters of `a-z`, `0-9`, `_` and `.`, starting with a letter.
///
/// ```
/// use opsrun_domain::ReasonCode;
/// assert!(ReasonCode::parse("restore.item_failed").is_ok());
/// assert!(ReasonCode::parse("Restore failed").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReasonCode(std::borrow::Cow<'static, str>);

/// Whether `code` follows the reason-code rule; `const` so built-in codes are checked while
/// compiling.
const fn is_reason_code(code: &str) -> bool {
    let bytes = code.as_bytes();
    if bytes.is_empty() || bytes.len() > 64 || !bytes[0].is_ascii_lowercase() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'.') {
            return false;
        }
        i += 1;
    }
    true
}

impl ReasonCode {
    /// A built-in reason code, checked while compiling when used in a `const`:
    /// `const STALE: ReasonCode = ReasonCode::from_static("run.stale");` does not compile with
    /// an invalid code. Use [`ReasonCode::parse`] for codes from input.
    #[must_use]
    pub const fn from_static(code: &'static str) -> Self {
        assert!(is_reason_code(code), "invalid built-in reason code");
        Self(std::borrow::Cow::Borrowed(code))
    }

    /// Validates a reason code.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] when the text breaks the reason-code rule.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        if !is_reason_code(text) {
            return Err(InvalidValue::new(
                "reason code",
                "must be 1 to 64 characters of a-z, 0-9, '_' and '.', starting with a letter",
            ));
        }
        Ok(Self(std::borrow::Cow::Owned(text.to_owned())))
    }

    /// The code text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An instant, as milliseconds since the Unix epoch (UTC). The domain never reads a clock: the
/// caller passes every instant in.
///
/// ```
/// use opsrun_domain::Timestamp;
/// let t = Timestamp::from_millis(1_000);
/// assert_eq!(t.plus_millis(500).as_millis(), 1_500);
/// assert_eq!(t.millis_since(Timestamp::from_millis(400)), 600);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// An instant from milliseconds since the Unix epoch.
    #[must_use]
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    #[must_use]
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// This instant moved forward by `millis` (saturating).
    #[must_use]
    pub const fn plus_millis(self, millis: i64) -> Self {
        Self(self.0.saturating_add(millis))
    }

    /// Milliseconds from `earlier` to `self` (negative when `earlier` is later).
    #[must_use]
    pub const fn millis_since(self, earlier: Self) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_accepts_the_documented_alphabet_and_lengths() {
        assert!(Slug::parse("a").is_ok());
        assert!(Slug::parse(&format!("a{}", "b".repeat(62))).is_ok());
        assert!(Slug::parse(&format!("a{}", "b".repeat(63))).is_err());
        assert!(Slug::parse("").is_err());
        assert!(Slug::parse("-a").is_err());
        assert!(Slug::parse("a_b").is_err());
        assert!(Slug::parse("a b").is_err());
        assert!(Slug::parse("äb").is_err());
    }

    #[test]
    fn item_key_refuses_control_characters_and_padding() {
        assert!(ItemKey::parse("a\nb").is_err());
        assert!(ItemKey::parse(" a").is_err());
        assert!(ItemKey::parse(&"x".repeat(201)).is_err());
        assert!(ItemKey::parse(&"x".repeat(200)).is_ok());
    }

    #[test]
    fn reason_code_refuses_spaces_and_capitals() {
        assert!(ReasonCode::parse("run.stale").is_ok());
        assert!(ReasonCode::parse("run stale").is_err());
        assert!(ReasonCode::parse("Run.stale").is_err());
        assert!(ReasonCode::parse(".run").is_err());
    }
}
