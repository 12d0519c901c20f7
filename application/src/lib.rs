//! Use cases of opsrun: the ports (async traits) the outside world implements,
//! `OperationRunService` (the only mutation path for counts and status), one writer per run
//! family, the read models and the access policy. No storage, queue or HTTP crate is used here.
