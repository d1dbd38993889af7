//! Command line: `points` (or `points serve`) runs the server; `points migrate` only migrates and exits;
//! `points healthcheck` asks a running server's gRPC health (for container probes); `points admin create-key` issues a
//! platform admin key; `points admin make-key` prints a well-formed key offline, for `POINTS_BOOTSTRAP_ADMIN_KEY`.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "points",
    version,
    about = "Loyalty points platform: gRPC on :50051, REST + docs on :8030"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run gRPC and the REST gateway (the default).
    Serve,
    /// Create the database if needed, migrate public and every tenant schema, print a summary, exit.
    Migrate,
    /// Ask the server on POINTS_GRPC_ADDR (on this host) for its gRPC health: exit 0 when SERVING, 1 otherwise.
    /// Needs no database; the image's HEALTHCHECK and compose use it.
    Healthcheck {
        /// How long to wait for the answer, in milliseconds.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Platform administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a platform admin key and print it (shown once).
    CreateKey {
        /// A name to recognise the key by.
        #[arg(long, default_value = "cli admin")]
        name: String,
    },
    /// Print a new well-formed key (prefix from POINTS_KEY_ENVIRONMENT) without touching any database: the value for
    /// POINTS_BOOTSTRAP_ADMIN_KEY, which the server installs as a platform admin key at start.
    MakeKey,
}
