//! A stop signal that every task of one executor can wait on.

use std::cell::Cell;

use glommio::sync::Semaphore;

/// A one-way stop signal, seen by every task of one executor.
pub struct Shutdown {
    started: Cell<bool>,
    /// Never has permits: closing it wakes every waiter at once.
    waiters: Semaphore,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            started: Cell::new(false),
            waiters: Semaphore::new(0),
        }
    }
}

impl Shutdown {
    pub fn start(&self) {
        self.started.set(true);
        self.waiters.close();
    }

    pub fn has_started(&self) -> bool {
        self.started.get()
    }

    /// Resolves once shutdown has started.
    pub async fn wait(&self) {
        if !self.has_started() {
            let _ = self.waiters.acquire(1).await;
        }
    }
}
