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
    if matches!(
        cli.command,
        cli::Command::Agent(_) | cli::Command::Server(_)
    ) {
        lean_allocator_or_reexec();
    }
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
    // So does the holder of a pod's PID namespace.
    if let cli::Command::Internal(cli::InternalCommand::PodInit { pid_file }) = &cli.command {
        return ExitCode::from(skiff_runtime::pod_init::run(pid_file) as u8);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // hickory logs every DNS question at info: the node DNS answers thousands
                // a second.
                tracing_subscriber::EnvFilter::new("info,hickory_server=warn")
            }),
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

/// The server and the node agent run with the lean allocator settings the container
/// monitors get (`skiff_runtime::monitor::LEAN_ALLOCATOR`). mimalloc reads them as it
/// starts, before `main`, so when they are not set yet the process runs itself again with
/// them, once. For the server (`skiff-bench api`, 10,000 pods): 280 → 150 MiB resident
/// after lists, creates/s within noise, a list's p50 ~25 → ~50 ms (freed pages go back to
/// the kernel and are faulted in again).
fn lean_allocator_or_reexec() {
    use std::os::unix::process::CommandExt;
    let settings = skiff_runtime::monitor::LEAN_ALLOCATOR;
    if settings
        .iter()
        .all(|(name, value)| std::env::var(name).is_ok_and(|v| v == *value))
    {
        return;
    }
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    let mut again = std::process::Command::new(me);
    again.args(std::env::args_os().skip(1));
    for (name, value) in settings {
        again.env(name, value);
    }
    // exec only returns on failure; the agent then runs with the defaults.
    let err = again.exec();
    eprintln!("warning: running with the default allocator settings: {err}");
}
