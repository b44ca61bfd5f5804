//! SIGINT, SIGTERM and SIGHUP: blocked on every thread and received by one.
//! A stop signal tells every shard to stop (a second one exits at once);
//! SIGHUP runs the reload the caller gave (certificates).

use futures::channel::oneshot;

/// Blocks SIGINT, SIGTERM and SIGHUP for this thread and every thread it
/// starts afterwards, and returns the set for [`wait_for_signals`].
pub fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-mask calls on a set we own. Blocking here, before
    // any executor thread exists, makes every thread inherit the mask, so only
    // the signal thread's sigwait receives these signals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits for signals: SIGHUP calls `reload`; the first stop signal tells
/// every shard, a second one exits now.
pub fn wait_for_signals(
    set: libc::sigset_t,
    stop_senders: Vec<oneshot::Sender<()>>,
    mut reload: impl FnMut(),
) {
    let mut stop_senders = Some(stop_senders);
    loop {
        let mut signal = 0;
        // SAFETY: sigwait reads the set we own and writes the signal number.
        unsafe { libc::sigwait(&set, &mut signal) };
        if signal == libc::SIGHUP {
            tracing::info!("SIGHUP received, reloading");
            reload();
            continue;
        }
        let Some(senders) = stop_senders.take() else {
            tracing::warn!(signal, "second stop signal, exiting immediately");
            std::process::exit(1);
        };
        tracing::info!(signal, "stop signal received, shutting down");
        for stop in senders {
            let _ = stop.send(());
        }
    }
}
