//! The coordinator's transitions on a real glommio executor and a real log
//! in a temp dir: Kafka's rules for InitProducerId (KIP-360), fencing, EndTxn
//! (V1 and KIP-890's V2), and recovery of a prepared transaction.

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use super::*;
use crate::group::tests::{run, temp_dir};
use crate::ids::PartitionId;

const TIMEOUT_MS: i32 = 60_000;

async fn open(dir: &Path) -> Rc<TxnCoordinator> {
    TxnCoordinator::open(dir, TxnConfig::default())
        .await
        .expect("coordinator opens")
}

async fn fresh(id: i64) -> Result<i64, TxnError> {
    Ok(id)
}

async fn init(c: &TxnCoordinator, expected: Option<(i64, i16)>) -> Result<InitOutcome, TxnError> {
    c.init_producer_id("app", TIMEOUT_MS, expected, || fresh(100))
        .await
}

fn ready(outcome: Result<InitOutcome, TxnError>) -> (i64, i16) {
    match outcome {
        Ok(InitOutcome::Ready {
            producer_id,
            producer_epoch,
        }) => (producer_id, producer_epoch),
        other => panic!("expected a producer id, got {other:?}"),
    }
}

fn orders(partition: i32) -> TxnPartition {
    (Arc::from("orders"), PartitionId(partition))
}

#[test]
fn init_bumps_the_epoch_and_an_old_epoch_is_fenced() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        assert_eq!(ready(init(&c, None).await), (100, 0));
        assert_eq!(ready(init(&c, None).await), (100, 1));
        // KIP-360: the producer names its id and epoch; a lost answer's retry gets the same.
        assert_eq!(ready(init(&c, Some((100, 1))).await), (100, 2));
        assert_eq!(ready(init(&c, Some((100, 1))).await), (100, 2));
        assert_eq!(
            init(&c, Some((100, 0))).await,
            Err(TxnError::ProducerFenced)
        );
        assert_eq!(
            c.init_producer_id("app", 900_001, None, || fresh(1)).await,
            Err(TxnError::InvalidTransactionTimeout)
        );
        assert_eq!(
            c.init_producer_id("", TIMEOUT_MS, None, || fresh(1)).await,
            Err(TxnError::InvalidRequest)
        );
    });
}

#[test]
fn a_new_producer_fences_an_open_transaction_and_aborts_it() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let (id, epoch) = ready(init(&c, None).await);
        c.add("app", id, epoch, &[orders(0)], &[], false)
            .await
            .expect("add");
        let Ok(InitOutcome::AbortFirst(abort)) = init(&c, None).await else {
            panic!("an open transaction is aborted first");
        };
        assert!(!abort.commit);
        assert_eq!(
            abort.producer_epoch,
            epoch + 1,
            "the markers fence the old epoch"
        );
        assert_eq!(abort.partitions, vec![orders(0)]);
        assert_eq!(init(&c, None).await, Err(TxnError::ConcurrentTransactions));
        assert_eq!(
            c.add("app", id, epoch, &[orders(1)], &[], false).await,
            Err(TxnError::ProducerFenced)
        );
        c.complete(&abort).await.expect("complete");
        assert_eq!(
            c.describe("app").expect("known").state,
            TxnState::CompleteAbort
        );
        assert_eq!(ready(init(&c, None).await), (id, epoch + 2));
    });
}

#[test]
fn end_txn_follows_kafkas_states_in_v1_and_bumps_the_epoch_in_v2() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let (id, epoch) = ready(init(&c, None).await);
        let end = |commit, v2, epoch| {
            let c = c.clone();
            async move { c.end_txn("app", id, epoch, commit, v2, || fresh(200)).await }
        };
        assert_eq!(
            end(true, false, epoch).await,
            Err(TxnError::InvalidTxnState)
        );
        assert_eq!(
            c.end_txn("app", id + 1, epoch, true, false, || fresh(1))
                .await,
            Err(TxnError::InvalidProducerIdMapping)
        );
        c.add("app", id, epoch, &[orders(0)], &["group".into()], false)
            .await
            .expect("add");
        let Ok(EndOutcome::Prepared(commit)) = end(true, false, epoch).await else {
            panic!("prepared");
        };
        assert_eq!(commit.groups, vec!["group".to_string()]);
        assert_eq!(
            end(true, false, epoch).await,
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(
            end(false, false, epoch).await,
            Err(TxnError::InvalidTxnState)
        );
        assert_eq!(
            c.complete(&commit).await,
            Ok((id, epoch)),
            "V1 keeps the epoch"
        );
        assert_eq!(
            end(true, false, epoch).await,
            Ok(EndOutcome::Done {
                producer_id: id,
                producer_epoch: epoch
            }),
            "a retried commit"
        );
        // V2: every end bumps the epoch, and the markers carry the new one.
        c.add("app", id, epoch, &[orders(1)], &[], true)
            .await
            .expect("implicit add");
        let Ok(EndOutcome::Prepared(v2)) = end(true, true, epoch).await else {
            panic!("prepared");
        };
        assert_eq!(v2.producer_epoch, epoch + 1);
        assert_eq!(c.complete(&v2).await, Ok((id, epoch + 1)));
        assert_eq!(
            end(true, true, epoch).await,
            Ok(EndOutcome::Done {
                producer_id: id,
                producer_epoch: epoch + 1
            }),
            "a V2 retry carries the old epoch"
        );
    });
}

#[test]
fn a_prepared_transaction_is_handed_back_after_a_reopen() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let first_epoch = c.coordinator_epoch();
        let (id, epoch) = ready(init(&c, None).await);
        c.add("app", id, epoch, &[orders(0), orders(1)], &[], false)
            .await
            .expect("add");
        let Ok(EndOutcome::Prepared(commit)) =
            c.end_txn("app", id, epoch, true, false, || fresh(1)).await
        else {
            panic!("prepared");
        };
        c.close().await.expect("close");
        drop(c);
        let c = open(&path).await;
        assert!(
            c.coordinator_epoch() > first_epoch,
            "a new coordinator epoch"
        );
        let prepared = c.prepared();
        assert_eq!(prepared.len(), 1);
        assert_eq!(prepared[0].partitions, commit.partitions);
        assert!(prepared[0].commit);
        c.complete(&prepared[0]).await.expect("complete");
        assert!(c.prepared().is_empty());
        assert_eq!(
            c.describe("app").expect("known").state,
            TxnState::CompleteCommit
        );
    });
}

#[test]
fn an_idle_id_expires_durably_and_an_open_transaction_does_not() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = TxnConfig {
            id_expiration_ms: 60_000,
            ..TxnConfig::default()
        };
        let c = TxnCoordinator::open(&path, config.clone())
            .await
            .expect("coordinator opens");
        assert_eq!(ready(init(&c, None).await), (100, 0));
        let (busy, epoch) = ready(
            c.init_producer_id("busy", TIMEOUT_MS, None, || fresh(101))
                .await,
        );
        c.add("busy", busy, epoch, &[orders(0)], &[], false)
            .await
            .expect("add");
        let now = crate::clock::now_ms();
        assert_eq!(
            c.expire_idle(now).await,
            0,
            "nothing is idle long enough yet"
        );
        let later = now + 120_000;
        assert_eq!(c.expire_idle(later).await, 1);
        assert_eq!(c.describe("app"), Err(TxnError::TransactionalIdNotFound));
        assert_eq!(c.describe("busy").expect("busy").state, TxnState::Ongoing);
        c.close().await.expect("close");
        drop(c);

        let c = TxnCoordinator::open(&path, config)
            .await
            .expect("coordinator reopens");
        assert_eq!(c.describe("app"), Err(TxnError::TransactionalIdNotFound));
        assert_eq!(c.describe("busy").expect("busy").state, TxnState::Ongoing);
        // The id starts afresh: a new producer id, epoch 0.
        assert_eq!(
            ready(
                c.init_producer_id("app", TIMEOUT_MS, None, || fresh(200))
                    .await
            ),
            (200, 0)
        );
    });
}
