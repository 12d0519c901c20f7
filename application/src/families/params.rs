//! Family parameters as every edge carries them: a map of names to a few plain value kinds
//! (the API's JSON, the CLI's `key=value`, a stored row), checked against the family's
//! [`ParamSpec`]s before the family turns them into its typed parameters.

use std::collections::BTreeMap;

use opsrun_domain::OperationType;

use crate::RunParams;

/// Longest parameter text shown back in an error message.
const SHOWN: usize = 64;

/// A parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    /// No value (JSON `null`): the same as leaving the parameter out.
    Null,
    /// An integer.
    Int(i64),
    /// A text.
    Text(String),
    /// A list of integers or texts.
    List(Vec<ParamValue>),
}

/// Parameters by name.
pub type ParamMap = BTreeMap<String, ParamValue>;

/// The kind of value a parameter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// An integer (an id).
    Int,
    /// A text.
    Text,
    /// A list of integers.
    IntList,
    /// A list of texts.
    TextList,
}

impl ParamKind {
    /// Every kind.
    pub const ALL: [Self; 4] = [Self::Int, Self::Text, Self::IntList, Self::TextList];

    /// The kind's name in messages and help.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Int => "an integer",
            Self::Text => "a text",
            Self::IntList => "a list of integers",
            Self::TextList => "a list of texts",
        }
    }

    fn admits(self, value: &ParamValue) -> bool {
        match (self, value) {
            (_, ParamValue::Null) => true,
            (Self::Int, ParamValue::Int(_)) | (Self::Text, ParamValue::Text(_)) => true,
            (Self::IntList, ParamValue::List(items)) => {
                items.iter().all(|v| matches!(v, ParamValue::Int(_)))
            }
            (Self::TextList, ParamValue::List(items)) => {
                items.iter().all(|v| matches!(v, ParamValue::Text(_)))
            }
            _ => false,
        }
    }
}

/// One parameter a family takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    /// Its name, e.g. `backup_set_id`.
    pub name: &'static str,
    /// The kind of value.
    pub kind: ParamKind,
    /// Whether it must be given.
    pub required: bool,
    /// One line for help texts.
    pub help: &'static str,
}

impl ParamSpec {
    /// A parameter `name` of `kind`, required or not, with one line of help.
    #[must_use]
    pub const fn new(
        name: &'static str,
        kind: ParamKind,
        required: bool,
        help: &'static str,
    ) -> Self {
        Self {
            name,
            kind,
            required,
            help,
        }
    }
}

/// Why parameters were refused. Nothing was started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    code: &'static str,
    message: String,
}

impl ParamError {
    /// `invalid_params` with a message.
    #[must_use]
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: "invalid_params",
            message: message.into(),
        }
    }

    /// `unknown_type`: no family has this key.
    #[must_use]
    pub fn unknown_type(key: &str) -> Self {
        Self {
            code: "unknown_type",
            message: format!(
                "'{}' is not an operation type",
                key.chars().take(SHOWN).collect::<String>()
            ),
        }
    }

    /// As [`Self::unknown_type`], naming the valid types.
    #[must_use]
    pub fn unknown_type_of(key: &str, valid: &[String]) -> Self {
        let mut error = Self::unknown_type(key);
        error.message = format!("{} (valid types: {})", error.message, valid.join(", "));
        error
    }

    /// The stable code: `unknown_type` or `invalid_params`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        self.code
    }
}

/// Parameters checked against a family's specs: every name known, every value of its kind,
/// every required one present. What a family's `parse_params` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamValues {
    operation_type: OperationType,
    values: ParamMap,
}

impl ParamValues {
    /// Checks `values` against `specs` of `operation_type`.
    ///
    /// # Errors
    ///
    /// [`ParamError`] (`invalid_params`) naming the first problem.
    pub fn check(
        operation_type: OperationType,
        specs: &[ParamSpec],
        values: ParamMap,
    ) -> Result<Self, ParamError> {
        if let Some(unknown) = values.keys().find(|k| !specs.iter().any(|s| s.name == *k)) {
            return Err(ParamError::invalid(format!(
                "{operation_type} takes no parameter '{}'",
                unknown.chars().take(SHOWN).collect::<String>()
            )));
        }
        for spec in specs {
            match values.get(spec.name) {
                None | Some(ParamValue::Null) if spec.required => {
                    return Err(ParamError::invalid(format!(
                        "{operation_type} needs the parameter '{}'",
                        spec.name
                    )));
                }
                Some(value) if !spec.kind.admits(value) => {
                    return Err(ParamError::invalid(format!(
                        "parameter '{}' must be {}",
                        spec.name,
                        spec.kind.name()
                    )));
                }
                _ => {}
            }
        }
        Ok(Self {
            operation_type,
            values,
        })
    }

    /// A host family's stored values, as its writer reads them back (they were checked when
    /// the run was started); `None` for a built-in family's typed parameters.
    #[must_use]
    pub fn of(params: &RunParams) -> Option<Self> {
        match params {
            RunParams::Custom {
                operation_type,
                values,
                ..
            } => Some(Self {
                operation_type: operation_type.clone(),
                values: values.clone(),
            }),
            _ => None,
        }
    }

    /// These values as a host family's parameters, working on `target` inside the tenant
    /// (with tenant and type, the run's dedupe identity).
    #[must_use]
    pub fn to_custom(&self, target: impl Into<String>) -> RunParams {
        RunParams::Custom {
            operation_type: self.operation_type.clone(),
            target: target.into(),
            values: self.values.clone(),
        }
    }

    /// The family these values are for.
    #[must_use]
    pub fn operation_type(&self) -> &OperationType {
        &self.operation_type
    }

    /// Every checked value (for a host family that stores them as they are).
    #[must_use]
    pub fn values(&self) -> &ParamMap {
        &self.values
    }

    fn get(&self, name: &str) -> Option<&ParamValue> {
        self.values.get(name).filter(|v| **v != ParamValue::Null)
    }

    fn missing(name: &str) -> ParamError {
        ParamError::invalid(format!("the parameter '{name}' is missing"))
    }

    /// An integer parameter, if given.
    #[must_use]
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Some(ParamValue::Int(v)) => Some(*v),
            _ => None,
        }
    }

    /// A required integer parameter.
    ///
    /// # Errors
    ///
    /// [`ParamError`] when it is missing.
    pub fn required_int(&self, name: &str) -> Result<i64, ParamError> {
        self.int(name).ok_or_else(|| Self::missing(name))
    }

    /// A text parameter, if given.
    #[must_use]
    pub fn text(&self, name: &str) -> Option<String> {
        match self.get(name) {
            Some(ParamValue::Text(v)) => Some(v.clone()),
            _ => None,
        }
    }

    /// A list of texts, if given.
    #[must_use]
    pub fn texts(&self, name: &str) -> Option<Vec<String>> {
        match self.get(name) {
            Some(ParamValue::List(items)) => Some(
                items
                    .iter()
                    .filter_map(|v| match v {
                        ParamValue::Text(t) => Some(t.clone()),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    /// A required list of texts.
    ///
    /// # Errors
    ///
    /// [`ParamError`] when it is missing.
    pub fn required_texts(&self, name: &str) -> Result<Vec<String>, ParamError> {
        self.texts(name).ok_or_else(|| Self::missing(name))
    }

    /// A list of integers, if given.
    #[must_use]
    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        match self.get(name) {
            Some(ParamValue::List(items)) => Some(
                items
                    .iter()
                    .filter_map(|v| match v {
                        ParamValue::Int(i) => Some(*i),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        }
    }
}
