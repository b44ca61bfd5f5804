//! The order in which appends reach one partition: first come, first served.
//!
//! A connection's pipelined produce requests are handled concurrently, so
//! each must take its place in the partition's queue in the order it
//! arrived, and keep it through every wait. Otherwise an idempotent
//! producer's later batch overtakes an earlier one and is refused as
//! OUT_OF_ORDER_SEQUENCE_NUMBER (KIP-98). glommio's `Semaphore` does not
//! keep that order: a released permit stays free until the waiter it woke
//! runs, and a newcomer can take it first. tokio's `Mutex` hands a released
//! lock straight to the oldest waiter; it needs no tokio runtime.

use std::sync::Arc;

/// One partition's append queue. Cloning shares it: a partition that is
/// still opening already queues its appends in the lock its log will use.
#[derive(Clone, Default)]
pub struct AppendLock(Arc<tokio::sync::Mutex<()>>);

/// The right to stage the next append, held until it is staged.
pub type AppendTurn = tokio::sync::OwnedMutexGuard<()>;

impl AppendLock {
    /// Waits for this caller's turn; the place in the queue is taken on the
    /// first poll.
    pub async fn turn(&self) -> AppendTurn {
        self.0.clone().lock_owned().await
    }

    /// `held` when the caller already took its turn, else a new one.
    pub async fn turn_unless_held(&self, held: Option<AppendTurn>) -> AppendTurn {
        match held {
            Some(turn) => turn,
            None => self.turn().await,
        }
    }

    /// The turn, when nobody holds it or waits for it.
    pub fn try_turn(&self) -> Option<AppendTurn> {
        self.0.clone().try_lock_owned().ok()
    }

    /// Whether `turn` is a turn of this lock.
    pub fn gave(&self, turn: &AppendTurn) -> bool {
        Arc::ptr_eq(&self.0, tokio::sync::OwnedMutexGuard::mutex(turn))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    /// Queues `count` waiters behind `held`, each recording its number.
    async fn queue_behind(
        lock: &AppendLock,
        count: usize,
        order: &Rc<RefCell<Vec<usize>>>,
    ) -> Vec<glommio::task::JoinHandle<()>> {
        let waiters = (1..=count)
            .map(|n| {
                let (lock, order) = (lock.clone(), order.clone());
                glommio::spawn_local(async move {
                    let _turn = lock.turn().await;
                    order.borrow_mut().push(n);
                })
                .detach()
            })
            .collect();
        // Every waiter runs to its place in the queue.
        glommio::executor().yield_task_queue_now().await;
        waiters
    }

    #[test]
    fn a_released_turn_goes_to_the_waiter_it_wakes_not_to_a_newcomer() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let lock = AppendLock::default();
                let order = Rc::new(RefCell::new(Vec::new()));
                let first = lock.try_turn().expect("a free lock gives its turn");
                let waiters = queue_behind(&lock, 1, &order).await;
                drop(first);
                // The woken waiter has not run yet: the turn is its own.
                assert!(lock.try_turn().is_none());
                for waiter in waiters {
                    waiter.await;
                }
                assert_eq!(*order.borrow(), [1]);
                let turn = lock.try_turn().expect("nobody holds or waits for it");
                assert!(lock.gave(&turn));
                assert!(!AppendLock::default().gave(&turn));
            })
            .expect("an executor starts")
            .join()
            .expect("the test executor finishes");
    }

    #[test]
    fn waiters_take_their_turns_in_the_order_they_queued() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let lock = AppendLock::default();
                let order = Rc::new(RefCell::new(Vec::new()));
                let first = lock.try_turn().expect("a free lock gives its turn");
                let waiters = queue_behind(&lock, 5, &order).await;
                drop(first);
                for waiter in waiters {
                    waiter.await;
                }
                assert_eq!(*order.borrow(), [1, 2, 3, 4, 5]);
            })
            .expect("an executor starts")
            .join()
            .expect("the test executor finishes");
    }
}
