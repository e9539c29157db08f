//! What every long-running process of the binary shares: its tokio runtime and its stop
//! signal.

/// A tokio runtime for one process, on one thread: the network tasks and the process's driver
/// loop then pass messages without thread switches (see `flotilla_host::driver`).
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called,
/// not when the future is first polled: a signal that arrives in between must not fall back to
/// the default action (killing the process without a clean stop).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping");
    }
}
