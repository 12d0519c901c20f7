//! Adapters of opsrun: the implementations of the application's ports (storage on SQLite and
//! PostgreSQL, the durable job queue, the simulated tenant provider). Nothing here decides a
//! count rule; every rule comes from `opsrun-domain` and is only enforced atomically here.
