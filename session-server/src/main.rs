//! The `session-server` binary: a single node with built-in defaults.

use std::process::ExitCode;

use clap::Parser;
use session_server::{Args, LogFormat, Server};
use tracing_subscriber::EnvFilter;

/// jemalloc rather than the system's malloc, for the memory a held session
/// takes. Each session holds a few small blocks for its whole life (its
/// connection's task and socket registration, which tokio aligns to 128
/// bytes, its mailbox, its entries in the session tables); glibc's malloc
/// adds a header to each, and an aligned block costs it more, where
/// jemalloc's size classes take them as they are. Holding 15,000 v1
/// sessions: about 1,620 bytes of RSS a session with glibc, 1,460 with
/// jemalloc, and no more CPU per ping. (mimalloc took 2,200.) Without the
/// `jemalloc` feature (on by default), the system's allocator.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args = match Args::parse().merged() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("session-server: {err}");
            return ExitCode::from(2);
        }
    };
    init_logging(args.log_format());
    let config = match args.into_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("session-server: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("session-server: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        // Listening for the signals before starting: one that comes while
        // the server starts (a supervisor stopping it at once) is kept, and
        // shuts the server down cleanly once it is up, instead of killing it.
        let stop = shutdown_signal();
        let mut hangups = hangups();
        let server = match Server::start(config).await {
            Ok(server) => server,
            Err(err) => {
                eprintln!("session-server: cannot start: {err}");
                return ExitCode::FAILURE;
            }
        };
        let mut stop = std::pin::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                // SIGHUP: read the TLS certificates again (a bad one is
                // refused and logged; the ones in use stay).
                () = hangups.next() => { let _ = server.reload_tls(); }
            }
        }
        // Bounded by the configured grace period, whatever clients do.
        server.shutdown().await;
        ExitCode::SUCCESS
    });
    // Nothing should be left running; if something is, it does not hold the
    // exit up.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}

fn init_logging(format: LogFormat) {
    // openraft narrates every election and snapshot at info; its warnings
    // and errors are what an operator needs.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn,chunked_wal=warn"));
    // Colours only for a terminal: a log file gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Every SIGHUP, on Unix; never elsewhere.
struct Hangups(#[cfg(unix)] Option<tokio::signal::unix::Signal>);

impl Hangups {
    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.0 {
            if signal.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

fn hangups() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        Hangups(signal(SignalKind::hangup()).ok())
    }
    #[cfg(not(unix))]
    {
        Hangups()
    }
}

/// SIGINT (Ctrl-C) or, on Unix, SIGTERM: the handlers are installed when
/// this is called, and a signal that comes before the future is awaited is
/// not lost.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            match (terminate, interrupt) {
                (Some(mut terminate), Some(mut interrupt)) => {
                    tokio::select! {
                        _ = terminate.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                (Some(mut one), None) | (None, Some(mut one)) => {
                    let _ = one.recv().await;
                }
                (None, None) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
