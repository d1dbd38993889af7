//! Command line: `points` (or `points serve`) runs the server; `points admin create-key` issues a platform admin
//! key; `points migrate` only migrates and exits.

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
}
