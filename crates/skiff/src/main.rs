//! The `skiff` command line.
//!
//! Each subcommand group lives in its own module under `cli/`. Errors reach the user as one
//! line naming the cause (and the fix, where there is one), never a backtrace.

mod cli;

/// mimalloc instead of the system allocator: the API server allocates and frees many small
/// JSON values per request, and glibc's malloc spent a third of the server's time on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(name = "skiff", version, about = "Kubernetes in one binary")]
struct Cli {
    #[command(subcommand)]
    command: cli::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The container monitor forks; it must run before any thread (tokio's) exists.
    if let cli::Command::Internal(cli::InternalCommand::ContainerMonitor { args }) = &cli.command {
        return match skiff_runtime::monitor::MonitorConfig::from_args(args) {
            Some(config) => ExitCode::from(skiff_runtime::monitor::daemonize_and_run(config) as u8),
            None => {
                eprintln!("error: container-monitor takes {} arguments", 8);
                ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.command.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
