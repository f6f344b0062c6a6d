//! Stop requests: Ctrl-C (SIGINT) and SIGTERM. Once this is polled, neither kills the
//! harness any more; the run's future is dropped and the cluster torn down in order.
//! (Children run in their own process groups, so a terminal's Ctrl-C reaches only the
//! harness.)

/// Completes with the signal's name at Ctrl-C or SIGTERM.
pub async fn stop_requested() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return "Ctrl-C",
                _ = term.recv() => return "SIGTERM",
            }
        }
    }
    match tokio::signal::ctrl_c().await {
        Ok(()) => "Ctrl-C",
        // No way to hear signals: never ask to stop (the guards still clean up).
        Err(_) => std::future::pending().await,
    }
}
