//! Placeholder module filled by the model-based property test.
