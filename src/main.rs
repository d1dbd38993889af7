//! The `points` binary: a shim over [`points::app::Application`] and the CLI subcommands.

use std::process::ExitCode;

use clap::Parser;
use points::{
    app::{Application, connect, healthcheck},
    cli::{AdminCommand, Cli, Command},
    config::Config,
    service::bootstrap::{self, Bootstrap},
    store, telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(config).await,
        Command::Healthcheck { timeout_ms } => {
            healthcheck(&config, std::time::Duration::from_millis(timeout_ms)).await
        }
        Command::Admin {
            command: AdminCommand::CreateKey { name },
        } => create_admin_key(config, &name).await,
        Command::Admin {
            command: AdminCommand::MakeKey,
        } => {
            // Only the key on stdout, so `$(points admin make-key)` captures it.
            println!(
                "{}",
                points::domain::api_key::ApiKeyPlaintext::generate(config.key_environment).expose()
            );
            Ok(())
        }
    };
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "exiting");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    };
    telemetry::flush();
    code
}

async fn serve(config: Config) -> anyhow::Result<()> {
    tracing::info!(settings = config.describe(), "starting");
    let app = Application::build(config).await?;
    if let Bootstrap::Created(key) = &app.bootstrap {
        print_key(
            "No platform admin key existed, so one was created. It is shown only this once:",
            key.expose(),
        );
    }
    let shutdown = app.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        shutdown.cancel();
    });
    app.run().await
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let services = connect(&config).await?;
    let summary =
        store::migrations::migrate_all_tenants(&services.pool, config.migration_concurrency)
            .await?;
    println!(
        "tenant schemas migrated: {}, failed: {}",
        summary.migrated,
        summary.failed.len()
    );
    for (merchant_id, error) in &summary.failed {
        println!("  {merchant_id}: {error}");
    }
    if summary.failed.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!("some tenant schemas failed to migrate"))
    }
}

async fn create_admin_key(config: Config, name: &str) -> anyhow::Result<()> {
    let services = connect(&config).await?;
    let key = bootstrap::create_admin_key(&services, name).await?;
    print_key(
        "Platform admin key created. It is shown only this once:",
        key.expose(),
    );
    Ok(())
}

fn print_key(headline: &str, key: &str) {
    println!("\n{headline}\n\n    {key}\n\nStore it now: the database keeps only a keyed hash.\n");
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
