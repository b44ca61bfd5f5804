//! SIGINT and SIGTERM: blocked on every thread and received by one, which
//! tells every shard to stop; a second signal exits at once.

use futures::channel::oneshot;

/// Blocks SIGINT and SIGTERM for this thread and every thread it starts
/// afterwards, and returns the set for [`wait_for_stop_signals`].
pub fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-mask calls on a set we own. Blocking here, before
    // any executor thread exists, makes every thread inherit the mask, so only
    // the signal thread's sigwait receives SIGINT/SIGTERM.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits for a stop signal and tells every shard; a second one exits now.
pub fn wait_for_stop_signals(set: libc::sigset_t, stop_senders: Vec<oneshot::Sender<()>>) {
    let mut signal = 0;
    // SAFETY: sigwait reads the set we own and writes the signal number.
    unsafe { libc::sigwait(&set, &mut signal) };
    tracing::info!(signal, "stop signal received, shutting down");
    for stop in stop_senders {
        let _ = stop.send(());
    }
    // A second signal means "now".
    unsafe { libc::sigwait(&set, &mut signal) };
    tracing::warn!(signal, "second stop signal, exiting immediately");
    std::process::exit(1);
}
