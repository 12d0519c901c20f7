//! How a command fails: bad input (exit 2) or anything else (exit 1), with its one line.

use std::process::ExitCode;

/// A command's failure, with its exit status.
#[derive(Debug)]
pub enum CliError {
    /// Bad input: exit 2.
    Input(String),
    /// Anything else: exit 1.
    Failure(anyhow::Error),
    /// The command did its work and its answer is the exit status alone (`ops watch`: the
    /// run's outcome); nothing is printed on stderr.
    Status(u8),
}

impl From<anyhow::Error> for CliError {
    fn from(error: anyhow::Error) -> Self {
        Self::Failure(error)
    }
}

impl CliError {
    /// The exit status.
    #[must_use]
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Input(_) => ExitCode::from(2),
            Self::Failure(_) => ExitCode::from(1),
            Self::Status(code) => ExitCode::from(*code),
        }
    }

    /// Whether the command failed only because stdout's reader went away (`opsrun ... | head`).
    #[must_use]
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Self::Input(_) | Self::Status(_) => false,
            Self::Failure(error) => error.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }),
        }
    }

    /// The one line printed on stderr.
    #[must_use]
    pub fn line(&self) -> String {
        match self {
            Self::Input(message) => format!("opsrun: {message}"),
            Self::Failure(error) => format!("opsrun: {error:#}"),
            Self::Status(_) => String::new(),
        }
    }
}
