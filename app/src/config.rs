//! The configuration, decided once: the command line and its environment variables (every
//! setting has one), the defaults and thresholds every command shares, and the settings the
//! runtime takes from them. Secrets never reach `Debug`: the database URL prints without its
//! password.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use opsrun_adapters::queue::QueueSettings;
use opsrun_application::DEFAULT_TENANT_LIMIT;
use opsrun_application::worker::RuntimeSettings;

/// Seconds without a sign of life after which a running run is stale: surfaces say so, and
/// the maintenance pass ends it `failed` (`run.stale`). The one place this default is set.
pub const STALE_AFTER_SECS: u64 = 600;
/// A queued run without a job for this long gets a new one (a run just created gets its job a
/// moment later; this leaves that moment alone).
pub const REQUEUE_AFTER_SECS: u64 = 60;
/// [`STALE_AFTER_SECS`] in milliseconds, as the read models take it.
#[expect(
    clippy::cast_possible_wrap,
    reason = "600 s fits an i64 of milliseconds"
)]
pub const STALE_AFTER_MS: i64 = (STALE_AFTER_SECS * 1000) as i64;

/// A database URL: shown without its password by `Debug` and [`DatabaseUrl::redacted`].
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL itself, to connect with.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without its password, for messages.
    #[must_use]
    pub fn redacted(&self) -> String {
        crate::wiring::redact(&self.0)
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

/// Examples shown under `opsrun --help`.
const EXAMPLES: &str = "Examples:
  opsrun demo                                   every run family with live progress
  opsrun tenants add contoso --workspace acme   a simulated tenant (creates the workspace)
  opsrun token create --workspace acme --email you@example.com --role owner
  opsrun serve --bind 127.0.0.1:8080            API, pages and workers; then open /login
  opsrun ops start inventory.sync --tenant contoso
  opsrun ops watch 12                           follow run 12; exit 0/3/1 by its outcome
  opsrun ops list -o json | jq '.items[].id'

Logging: OPSRUN_LOG (an EnvFilter, e.g. info) and --log-format text|json.";

/// Examples and types shown under `opsrun ops start --help`.
const START_HELP: &str = "Types and their parameters (--param key=value; lists comma-separated):
  inventory.sync              policy_types=a,b            (default: every type)
  review_pack.generate        sections=a,b                (default: every section)
  evidence_snapshot.generate  dimensions=a,b              (default: every dimension)
  backup_set.add_policies     backup_set_id=N policy_ids=a,b
  backup_set.restore          backup_set_id=N [item_ids=1,2]
  baseline.capture            (none)
  baseline.compare            baseline_id=N

Examples:
  opsrun ops start inventory.sync --tenant contoso --param policy_types=compliance_policy
  opsrun ops start backup_set.restore --tenant contoso --param backup_set_id=3";

/// The heading the global options stand under in every command's help: listed once, apart
/// from the command's own options.
const GLOBAL: &str = "Global options";

/// Default database: the embedded SQLite file in the current folder.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://opsrun.db?mode=rwc";

/// The demo's own database, unless `opsrun demo --database-url ...` names another: the demo
/// never seeds what `DATABASE_URL` points at by accident.
pub const DEMO_DATABASE_URL: &str = "sqlite://opsrun-demo.db?mode=rwc";

/// opsrun runs long operations for many tenants with truthful progress: a determinate bar only
/// when the work has a deterministic number of units, and a count that never passes its total,
/// never goes backwards and never counts an item twice, through retries, crashes and many
/// workers.
///
/// Every command migrates the schema on start if needed. Exit status: 0 success, 2 bad usage or
/// bad input, 1 any other failure.
#[derive(Debug, Parser)]
#[command(name = "opsrun", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Database: an SQLite file (sqlite://FILE?mode=rwc) or a PostgreSQL URL
    /// (postgres://USER:PASS@HOST/DB). Swapping one for the other needs no other change.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true, hide_env_values = true, help_heading = GLOBAL)]
    pub database_url: DatabaseUrl,

    /// Folder review-pack artifacts are written to.
    #[arg(
        long,
        env = "OPSRUN_ARTIFACTS",
        hide_env_values = true,
        default_value = "artifacts",
        global = true,
        help_heading = GLOBAL
    )]
    pub artifacts: PathBuf,

    /// Log lines on stderr as `text` (colours only when stderr is a terminal) or `json` (one
    /// object per line). Which lines: `OPSRUN_LOG`, an `EnvFilter` such as `info` or
    /// `warn,opsrun::access=info` (default: warnings, plus requests and run lifecycle at info).
    #[arg(long, env = "OPSRUN_LOG_FORMAT", hide_env_values = true, default_value = "text", global = true, value_parser = ["text", "json"], help_heading = GLOBAL)]
    pub log_format: String,

    /// Whether `--database-url` was given on the command line (not from `DATABASE_URL` or the
    /// default): `opsrun demo` seeds only a database it was explicitly given, else its own file.
    #[arg(skip)]
    pub database_url_given: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the schema (runs, ledger, directory, family tables, job queue).
    #[command(after_help = "Examples:\n  opsrun migrate
  opsrun migrate --database-url postgres://opsrun@db/opsrun")]
    Migrate,
    /// Seed a demo workspace with two simulated tenants, run every run family with live
    /// progress, and print a summary. Needs no setup: uses its own SQLite file
    /// (`./opsrun-demo.db`) unless `--database-url` is given on the command line, and refuses a
    /// database that holds other workspaces than `demo`.
    #[command(
        after_help = "Examples:\n  opsrun demo                                   on ./opsrun-demo.db
  opsrun demo --database-url sqlite://try.db"
    )]
    Demo,
    /// Serve the HTTP API and run job workers in one process, until SIGINT or SIGTERM.
    ///
    /// Prints the bound address as the first line of stdout (`listening on http://...`), so
    /// `--bind 127.0.0.1:0` can be used by scripts.
    #[command(
        after_help = "Examples:\n  opsrun serve                                  http://127.0.0.1:8080/login
  opsrun serve --bind 0.0.0.0:8080 --workers 16 --database-url postgres://opsrun@db/opsrun
  OPSRUN_LOG=info opsrun serve --log-format json"
    )]
    Serve(ServeArgs),
    /// Run job workers until SIGINT or SIGTERM (for more machines against one PostgreSQL).
    ///
    /// In-flight jobs finish before exit; jobs fetched but not started go back to the queue.
    /// The worker also ends runs whose job is gone (no heartbeat within --stale-after-secs)
    /// and reconciles counts, every --maintenance-secs.
    #[command(
        after_help = "Examples:\n  opsrun worker --database-url postgres://opsrun@db/opsrun --workers 16"
    )]
    Worker(WorkerArgs),
    /// Manage simulated tenants.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  opsrun tenants add contoso --workspace acme --policies 120
  opsrun tenants list -o json
  opsrun tenants limit contoso --max-running 2"
    )]
    Tenants(TenantsCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  opsrun token create --workspace acme --email ops@example.com --role operator --expires-in 90d
  opsrun token list --workspace acme
  opsrun token revoke 7"
    )]
    Token(TokenCommand),
    /// Manage webhook endpoints: signed POSTs when runs complete.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  opsrun webhooks add https://hooks.example.com/opsrun --workspace acme
  opsrun webhooks list -o json
  opsrun webhooks remove 3"
    )]
    Webhooks(WebhooksCommand),
    /// List, show, watch, start, pause, resume, retry and cancel operations (as the
    /// workspace's owner).
    #[command(subcommand)]
    #[command(after_help = "Examples:\n  opsrun ops list --status running
  opsrun ops start inventory.sync --tenant contoso
  opsrun ops watch 12")]
    Ops(OpsCommand),
    /// List workspaces.
    #[command(subcommand)]
    #[command(after_help = "Examples:\n  opsrun workspaces list -o json")]
    Workspaces(WorkspacesCommand),
    /// Print a shell completion script, e.g. `opsrun completions bash > /etc/bash_completion.d/opsrun`.
    #[command(
        after_help = "Examples:\n  opsrun completions bash > /etc/bash_completion.d/opsrun
  opsrun completions zsh > ~/.zfunc/_opsrun
  opsrun completions fish > ~/.config/fish/completions/opsrun.fish"
    )]
    Completions {
        /// The shell.
        #[arg(value_parser = ["bash", "zsh", "fish", "elvish", "powershell"])]
        shell: String,
    },
    /// Print the manual page (roff), e.g. `opsrun man > opsrun.1 && man ./opsrun.1`.
    #[command(after_help = "Examples:\n  opsrun man > opsrun.1 && man ./opsrun.1")]
    Man,
    /// End every running run with no sign of life for --stale-after-secs as failed (run.stale).
    #[command(after_help = "Examples:\n  opsrun fail-stale --stale-after-secs 1800")]
    FailStale {
        /// Seconds without a heartbeat after which a running run is stale.
        #[arg(long, env = "OPSRUN_STALE_AFTER_SECS", hide_env_values = true, default_value_t = STALE_AFTER_SECS)]
        stale_after_secs: u64,
    },
    /// Recount every active run from its ledger (repairing drift) and complete fan-out parents
    /// whose children are all done.
    #[command(
        after_help = "Examples:\n  opsrun reconcile --database-url postgres://opsrun@db/opsrun"
    )]
    Reconcile,
}

/// Options of `opsrun serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(
        long,
        env = "OPSRUN_BIND",
        hide_env_values = true,
        default_value = "127.0.0.1:8080"
    )]
    pub bind: String,
    /// Most connections open at once; one more is closed at accept. Keep it below the
    /// process's open-file limit (`ulimit -n`, systemd's LimitNOFILE).
    #[arg(
        long,
        env = "OPSRUN_MAX_CONNECTIONS",
        hide_env_values = true,
        default_value_t = 8_192
    )]
    pub max_connections: usize,
    /// Seconds a connection has to send a request's headers (also while idle between
    /// requests); a slower one is closed.
    #[arg(
        long,
        env = "OPSRUN_HEADER_TIMEOUT_SECS",
        hide_env_values = true,
        default_value_t = 10
    )]
    pub header_timeout_secs: u64,
    /// Mark the page session cookie `Secure` on every answer (behind a TLS proxy that does not
    /// send `X-Forwarded-Proto: https`; with that header it is marked `Secure` anyway).
    #[arg(long, env = "OPSRUN_SECURE_COOKIES", hide_env_values = true)]
    pub secure_cookies: bool,
    /// Worker settings of the in-process workers.
    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// Options of `opsrun worker`.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Jobs run at once per queue.
    #[arg(
        long,
        env = "OPSRUN_WORKERS",
        hide_env_values = true,
        default_value_t = 8
    )]
    pub workers: usize,
    /// Milliseconds between worker heartbeats.
    #[arg(
        long,
        env = "OPSRUN_HEARTBEAT_MS",
        hide_env_values = true,
        default_value_t = 5_000
    )]
    pub heartbeat_ms: u64,
    /// Missed heartbeats after which a worker is dead and its jobs run again elsewhere.
    #[arg(
        long,
        env = "OPSRUN_MISSED_HEARTBEATS",
        hide_env_values = true,
        default_value_t = 3
    )]
    pub missed_heartbeats: u32,
    /// Attempts per job before its run (or fan-out item) ends failed.
    #[arg(
        long,
        env = "OPSRUN_MAX_ATTEMPTS",
        hide_env_values = true,
        default_value_t = 5
    )]
    pub max_attempts: u32,
    /// Seconds without a sign of life after which a running run is failed as stale.
    #[arg(long, env = "OPSRUN_STALE_AFTER_SECS", hide_env_values = true, default_value_t = STALE_AFTER_SECS)]
    pub stale_after_secs: u64,
    /// Seconds the queue may stay unusable (workers failing and restarting with backoff)
    /// before the process gives up and exits non-zero, for its service manager to restart it.
    #[arg(
        long,
        env = "OPSRUN_GIVE_UP_AFTER_SECS",
        hide_env_values = true,
        default_value_t = 600
    )]
    pub give_up_after_secs: u64,
    /// Days finished queue jobs, gone workers' rows and notifications are kept before the
    /// maintenance pass prunes them (in batches of 1,000 per kind and pass).
    #[arg(
        long,
        env = "OPSRUN_RETENTION_DAYS",
        hide_env_values = true,
        default_value_t = 14
    )]
    pub retention_days: u64,
    /// Seconds between maintenance passes (stale runs, reconcile).
    #[arg(
        long,
        env = "OPSRUN_MAINTENANCE_SECS",
        hide_env_values = true,
        default_value_t = 30
    )]
    pub maintenance_secs: u64,
    /// Runs of one tenant that may run at once (a tenant's own limit, `opsrun tenants limit`,
    /// wins); the others wait queued, so one tenant's slow runs never occupy every worker.
    #[arg(long, env = "OPSRUN_TENANT_CONCURRENCY", hide_env_values = true, default_value_t = DEFAULT_TENANT_LIMIT)]
    pub tenant_concurrency: u32,
    /// Serve Prometheus metrics at http://ADDR/metrics, without auth (bind a private address;
    /// the main port does not serve them).
    #[arg(long, env = "OPSRUN_METRICS_BIND", hide_env_values = true)]
    pub metrics_bind: Option<String>,
    /// Webhook settings (registration and delivery).
    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

/// Where webhooks may go and how they are retried: `serve` and `worker` deliver,
/// `serve` and `webhooks add` register.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Webhooks")]
pub struct WebhookArgs {
    /// Accept plain http:// webhook URLs (local development; deliveries are then unencrypted).
    #[arg(long, env = "OPSRUN_ALLOW_HTTP_WEBHOOKS", hide_env_values = true)]
    pub allow_http_webhooks: bool,
    /// Let webhooks reach loopback, private and link-local addresses (local development;
    /// off, a registered URL cannot make this server call its own network).
    #[arg(long, env = "OPSRUN_ALLOW_PRIVATE_WEBHOOKS", hide_env_values = true)]
    pub allow_private_webhooks: bool,
    /// Seconds one delivery attempt may take (connect, send, answer).
    #[arg(
        long,
        env = "OPSRUN_WEBHOOK_TIMEOUT_SECS",
        hide_env_values = true,
        default_value_t = 10
    )]
    pub webhook_timeout_secs: u64,
    /// Milliseconds before the first retry of a failed delivery; each next one waits twice as
    /// long (at most an hour, with jitter).
    #[arg(
        long,
        env = "OPSRUN_WEBHOOK_RETRY_BASE_MS",
        hide_env_values = true,
        default_value_t = 10_000
    )]
    pub webhook_retry_base_ms: u64,
    /// Seconds after the event during which a failing delivery is retried; then it is failed.
    #[arg(
        long,
        env = "OPSRUN_WEBHOOK_RETRY_FOR_SECS",
        hide_env_values = true,
        default_value_t = 86_400
    )]
    pub webhook_retry_for_secs: u64,
}

impl Default for WebhookArgs {
    /// The options' defaults (https only, public addresses only, 10 s, 10 s doubling, 24 h).
    fn default() -> Self {
        Self {
            allow_http_webhooks: false,
            allow_private_webhooks: false,
            webhook_timeout_secs: 10,
            webhook_retry_base_ms: 10_000,
            webhook_retry_for_secs: 86_400,
        }
    }
}

impl WebhookArgs {
    /// The policy these options give, or why they are refused.
    ///
    /// # Errors
    ///
    /// A message naming the option out of range.
    pub fn policy(&self) -> Result<opsrun_application::webhooks::WebhookPolicy, String> {
        if !(1..=300).contains(&self.webhook_timeout_secs) {
            return Err("--webhook-timeout-secs must be 1 to 300".to_owned());
        }
        if !(10..=3_600_000).contains(&self.webhook_retry_base_ms) {
            return Err("--webhook-retry-base-ms must be 10 to 3600000".to_owned());
        }
        if !(1..=30 * 86_400).contains(&self.webhook_retry_for_secs) {
            return Err("--webhook-retry-for-secs must be 1 to 2592000 (30 days)".to_owned());
        }
        let base_ms = i64::try_from(self.webhook_retry_base_ms).unwrap_or(i64::MAX);
        Ok(opsrun_application::webhooks::WebhookPolicy {
            allow_http: self.allow_http_webhooks,
            allow_private: self.allow_private_webhooks,
            retry: opsrun_domain::RetrySchedule {
                base_ms,
                cap_ms: base_ms.max(3_600_000),
                window_ms: i64::try_from(self.webhook_retry_for_secs)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1_000),
            },
        })
    }

    /// The attempt timeout.
    #[must_use]
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.webhook_timeout_secs)
    }
}

/// `opsrun workspaces ...`.
#[derive(Debug, Subcommand)]
pub enum WorkspacesCommand {
    /// List every workspace's slug.
    #[command(after_help = "Examples:\n  opsrun workspaces list
  opsrun workspaces list -o json")]
    List {
        /// Output format.
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// `opsrun tenants ...`.
#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Create the workspace if missing and a tenant backed by the simulated provider; prints the
    /// tenant slug.
    #[command(
        after_help = "Examples:\n  opsrun tenants add contoso --workspace acme --policies 120 --latency-ms 50 --failure-rate 0.1"
    )]
    Add(TenantAddArgs),
    /// Set a tenant's own concurrency limit (runs of it that may run at once), or with
    /// `--default` go back to the workers' `--tenant-concurrency`.
    #[command(
        after_help = "Examples:\n  opsrun tenants limit contoso --max-running 2
  opsrun tenants limit contoso --default"
    )]
    Limit(TenantLimitArgs),
    /// List the tenants of a workspace: slug and concurrency limit.
    #[command(after_help = "Examples:\n  opsrun tenants list --workspace acme
  opsrun tenants list -o json")]
    List {
        /// Workspace slug (default: the only workspace).
        #[arg(long, env = "OPSRUN_WORKSPACE", hide_env_values = true)]
        workspace: Option<String>,
        /// Output format.
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// Options of `opsrun tenants limit`.
#[derive(Debug, Clone, Args)]
pub struct TenantLimitArgs {
    /// Tenant slug.
    pub slug: String,
    /// Workspace slug (default: the only workspace).
    #[arg(long, env = "OPSRUN_WORKSPACE", hide_env_values = true)]
    pub workspace: Option<String>,
    /// Runs of this tenant that may run at once (1 to 1000).
    #[arg(long, conflicts_with = "default", required_unless_present = "default")]
    pub max_running: Option<u32>,
    /// Remove the tenant's own limit.
    #[arg(long)]
    pub default: bool,
}

/// Options of `opsrun tenants add`.
#[derive(Debug, Clone, Args)]
pub struct TenantAddArgs {
    /// Tenant slug: lowercase letters, digits and '-', 1 to 63 characters, starting with a letter.
    pub slug: String,
    /// Workspace slug (created if missing).
    #[arg(long)]
    pub workspace: String,
    /// Number of policies the simulated tenant has, spread over the 8 policy types.
    #[arg(long, default_value_t = 40)]
    pub policies: u32,
    /// Milliseconds each provider call sleeps.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u32,
    /// Fraction of items that fail (0 to 1), chosen deterministically by --seed.
    #[arg(long, default_value_t = 0.0)]
    pub failure_rate: f64,
    /// Seed that chooses which items fail.
    #[arg(long, default_value_t = 1)]
    pub seed: i64,
}

/// `opsrun ops ...`.
#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// List top-level runs, newest first.
    #[command(
        after_help = "Examples:\n  opsrun ops list --tenant contoso --status running
  opsrun ops list -o json | jq '.items[] | {id, status, outcome}'"
    )]
    List(ListArgs),
    /// Show one run: status, outcome, counts, progress, failed items, timeline.
    #[command(after_help = "Examples:\n  opsrun ops show 12
  opsrun ops show 12 -o json | jq .progress")]
    Show(RunArgs),
    /// Follow a run until it completes (a live bar on a terminal, a line per change
    /// otherwise), then print its summary. Exit status by outcome: 0 succeeded, 3 partially
    /// succeeded, 1 failed, blocked or cancelled.
    #[command(after_help = "Examples:\n  opsrun ops watch 12 && echo all succeeded
  opsrun ops watch 12; echo $?   0 succeeded, 3 partially succeeded, 1 otherwise")]
    Watch {
        /// The run id.
        id: i64,
        /// Workspace slug (default: the only workspace).
        #[arg(long, env = "OPSRUN_WORKSPACE", hide_env_values = true)]
        workspace: Option<String>,
    },
    /// List a run's items by item key: key, outcome, reason, recorded at.
    #[command(after_help = "Examples:\n  opsrun ops items 12 --outcome failed
  opsrun ops items 12 -o json --limit 200 | jq -r '.items[].item_key'")]
    Items {
        /// The run id.
        id: i64,
        /// Only items with this outcome.
        #[arg(long, value_parser = ["succeeded", "failed", "skipped"])]
        outcome: Option<String>,
        /// At most this many (1 to 200).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only items after this key (a page's `next_cursor`).
        #[arg(long)]
        cursor: Option<String>,
        /// Workspace slug (default: the only workspace).
        #[arg(long, env = "OPSRUN_WORKSPACE", hide_env_values = true)]
        workspace: Option<String>,
        /// How to print it.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Start an operation (or show the active one with the same tenant, type and target).
    #[command(after_help = START_HELP)]
    Start(StartArgs),
    /// Cancel a queued or running run.
    #[command(after_help = "Examples:\n  opsrun ops cancel 12")]
    Cancel(RunArgs),
    /// Pause a queued or running run: it starts no new item, keeps its counts, never goes stale.
    #[command(after_help = "Examples:\n  opsrun ops pause 12 && opsrun ops resume 12")]
    Pause(RunArgs),
    /// Resume a paused run where it stopped.
    #[command(after_help = "Examples:\n  opsrun ops resume 12")]
    Resume(RunArgs),
    /// Start a new run over exactly the failed items of a completed run (linked as retry_of).
    #[command(after_help = "Examples:\n  opsrun ops retry 12
  opsrun ops retry 12 -o json | jq .id")]
    Retry(RunArgs),
}

/// A run named by id: `ops show|cancel|pause|resume|retry`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The run id.
    pub id: i64,
    /// Workspace slug (default: the only workspace).
    #[arg(long, env = "OPSRUN_WORKSPACE", hide_env_values = true)]
    pub workspace: Option<String>,
    /// How to print the run (`-o json`: the API's run document as it is after the command).
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Options of `opsrun ops list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this status.
    #[arg(long, value_parser = ["queued", "running", "completed"])]
    pub status: Option<String>,
    /// Workspace slug (default: the only workspace).
    #[arg(long, env = "OPSRUN_WORKSPACE", hide_env_values = true)]
    pub workspace: Option<String>,
    /// At most this many runs (1 to 200).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// How to print it.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `-o table|json` (or `--json`): a table for people, or exactly the API's JSON document.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// `table` for people, `json` for scripts (the same document the HTTP API answers).
    #[arg(short = 'o', long = "output", default_value = "table", value_parser = ["table", "json"])]
    pub output: String,
    /// Same as `-o json`.
    #[arg(long)]
    pub json: bool,
}

impl OutputArgs {
    /// Whether JSON was asked for.
    #[must_use]
    pub fn is_json(&self) -> bool {
        self.json || self.output == "json"
    }
}

/// Options of `opsrun ops start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The operation type, e.g. inventory.sync.
    pub operation_type: String,
    /// The tenant slug.
    #[arg(long)]
    pub tenant: String,
    /// A parameter as key=value; lists are comma-separated (policy_types=a,b).
    #[arg(long = "param")]
    pub params: Vec<String>,
    /// Workspace slug (default: the only workspace).
    #[arg(long, env = "OPSRUN_WORKSPACE", hide_env_values = true)]
    pub workspace: Option<String>,
    /// How to print the run (`-o json`: the API's run document, `reused` included).
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `opsrun token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create the user if missing and a new API token; prints the token alone.
    #[command(
        after_help = "Examples:\n  opsrun token create --workspace acme --email ops@example.com --role owner
  opsrun token create --workspace acme --email ci@example.com --role operator --tenant contoso --expires-in 30d"
    )]
    Create(TokenArgs),
    /// List API tokens (never their secrets): id, workspace, user, role, tenants, dates.
    #[command(after_help = "Examples:\n  opsrun token list --workspace acme
  opsrun token list -o json | jq '.items[] | select(.status == \"active\")'")]
    List {
        /// Only this workspace's tokens.
        #[arg(long)]
        workspace: Option<String>,
        /// Output format.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Revoke an API token: it fails at once, its page sessions and event streams end.
    #[command(after_help = "Examples:\n  opsrun token revoke 7")]
    Revoke {
        /// The token id (from `token list`).
        id: String,
    },
}

/// `opsrun webhooks ...`.
#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Register an endpoint for the workspace's runs; prints its id and signing secret (shown
    /// this once).
    #[command(
        after_help = "Examples:\n  opsrun webhooks add https://hooks.example.com/opsrun --workspace acme
  opsrun webhooks add http://127.0.0.1:9000/hook --allow-http-webhooks --allow-private-webhooks -o json"
    )]
    Add(WebhookAddArgs),
    /// List endpoints (never their secrets): id, workspace, URL, events, tenants, created.
    #[command(after_help = "Examples:\n  opsrun webhooks list --workspace acme
  opsrun webhooks list -o json")]
    List {
        /// Only this workspace's endpoints.
        #[arg(long)]
        workspace: Option<String>,
        /// Output format.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Remove an endpoint and its delivery log; its pending deliveries are not sent.
    #[command(after_help = "Examples:\n  opsrun webhooks remove 3")]
    Remove {
        /// The endpoint id (from `webhooks list`).
        id: String,
    },
}

/// Options of `opsrun webhooks add`.
#[derive(Debug, Args)]
pub struct WebhookAddArgs {
    /// The endpoint's URL: https (http only with --allow-http-webhooks), no credentials.
    pub url: String,
    /// Workspace slug (default: the only workspace).
    #[arg(long, env = "OPSRUN_WORKSPACE", hide_env_values = true)]
    pub workspace: Option<String>,
    /// An event to deliver (repeat); default `operation.completed`.
    #[arg(long = "event")]
    pub events: Vec<String>,
    /// Where webhooks may go (the same options as `serve`).
    #[command(flatten)]
    pub webhooks: WebhookArgs,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Options of `opsrun token create`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Workspace slug.
    #[arg(long)]
    pub workspace: String,
    /// The user's e-mail.
    #[arg(long)]
    pub email: String,
    /// What the token may do.
    #[arg(long, value_parser = ["readonly", "operator", "owner"])]
    pub role: String,
    /// A tenant the token may see (repeat); none means every tenant of the workspace.
    #[arg(long = "tenant")]
    pub tenants: Vec<String>,
    /// How long the token works, e.g. `90d`, `12h`, `30m` (default: until revoked).
    #[arg(long = "expires-in")]
    pub expires_in: Option<String>,
    /// Create the workspace when it does not exist (without it, a mistyped workspace is an
    /// error rather than a new, empty workspace).
    #[arg(long)]
    pub create_workspace: bool,
}

/// The runtime settings of the worker options.
#[must_use]
pub fn runtime_settings(args: &WorkerArgs) -> RuntimeSettings {
    RuntimeSettings {
        requeue_after: Duration::from_secs(REQUEUE_AFTER_SECS),
        retain_for: Duration::from_secs(args.retention_days.max(1).saturating_mul(86_400)),
        stale_after: Duration::from_secs(args.stale_after_secs),
        maintenance_every: Duration::from_secs(args.maintenance_secs.max(1)),
        max_attempts: args.max_attempts.max(1),
    }
}

/// The queue settings of the worker options (`None`: a command that runs no workers).
#[must_use]
pub fn queue_settings(args: Option<&WorkerArgs>) -> QueueSettings {
    let defaults = QueueSettings::default();
    match args {
        None => defaults,
        Some(a) => QueueSettings {
            concurrency: a.workers.max(1),
            batch_size: a.workers.max(1),
            heartbeat: Duration::from_millis(a.heartbeat_ms.max(100)),
            missed_heartbeats: a.missed_heartbeats.max(1),
            max_attempts: a.max_attempts.max(1),
            give_up_after: Duration::from_secs(a.give_up_after_secs.max(1)),
            ..defaults
        },
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every command, at every depth, ends its help with examples; the global options stand
    /// under their own heading, so a subcommand's help lists them once, apart from its own.
    #[test]
    fn every_command_has_examples_and_globals_have_their_heading() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", command.get_name());
            let examples = command
                .get_after_help()
                .is_some_and(|h| h.to_string().contains("Examples:"));
            if !examples && command.get_name() != "help" {
                missing.push(path.clone());
            }
            for sub in command.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let cli = Cli::command();
        let mut missing = Vec::new();
        walk(&cli, "", &mut missing);
        let globals: Vec<_> = cli
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| (a.get_id().to_string(), a.get_help_heading()))
            .collect();

        assert_eq!(missing, Vec::<String>::new());
        assert_eq!(globals.len(), 3, "{globals:?}");
        assert!(
            globals
                .iter()
                .all(|(_, heading)| *heading == Some("Global options")),
            "{globals:?}"
        );
    }
}
