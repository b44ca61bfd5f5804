use super::*;

#[test]
fn simple_commits_are_fetched_and_bad_partitions_get_their_own_errors() {
    with_coordinator(|c| async move {
        let codes = commit(
            &c,
            "simple",
            -1,
            "",
            &[("orders", 0, 10), ("orders", 9, 1), ("nope", 0, 1)],
        )
        .await;
        assert_eq!(
            codes,
            vec![
                None,
                Some(GroupError::UnknownTopicOrPartition),
                Some(GroupError::UnknownTopicOrPartition)
            ]
        );
        assert_eq!(fetch(&c, "simple", "orders", 0), 10);
        assert_eq!(fetch(&c, "simple", "orders", 1), -1);
        assert_eq!(fetch(&c, "unknown-group", "orders", 0), -1);
        let all = c.offset_fetch_group(&fetch_request("simple", None));
        assert_eq!(all.topics.len(), 1);
        assert_eq!(all.topics[0].partitions[0].metadata, "meta");
        assert_eq!(all.topics[0].partitions[0].leader_epoch, 3);
        let mut request = commit_request("simple", -1, "", &[("orders", 0, 1)]);
        request.topics[0].partitions[0].metadata = Some("x".repeat(5000));
        let response = c.offset_commit(request, &Topics).await;
        assert_eq!(
            response[0].partitions[0].error,
            Some(GroupError::OffsetMetadataTooLarge)
        );
        // A generation this coordinator never formed.
        assert_eq!(
            commit(&c, "other", 3, "m", &[("orders", 0, 1)]).await,
            vec![Some(GroupError::IllegalGeneration)]
        );
    });
}

#[test]
fn member_commits_are_checked_against_membership_and_generation() {
    with_coordinator(|c| async move {
        let (member, generation) = member_with_commits(&c, "g", &[("orders", 1, 7)]).await;
        assert_eq!(fetch(&c, "g", "orders", 1), 7);
        assert_eq!(
            commit(&c, "g", generation + 1, &member, &[("orders", 1, 8)]).await,
            vec![Some(GroupError::IllegalGeneration)]
        );
        assert_eq!(
            commit(&c, "g", generation, "stranger", &[("orders", 1, 8)]).await,
            vec![Some(GroupError::UnknownMemberId)]
        );
        // Non-members cannot commit to a group with members.
        assert_eq!(
            commit(&c, "g", -1, "", &[("orders", 1, 8)]).await,
            vec![Some(GroupError::UnknownMemberId)]
        );
        assert_eq!(fetch(&c, "g", "orders", 1), 7);
    });
}

#[test]
fn concurrent_commits_share_fdatasyncs() {
    with_coordinator(|c| async move {
        let before = c.log_stats().flushes;
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let c = c.clone();
                glommio::spawn_local(async move {
                    commit(&c, "simple", -1, "", &[("orders", i % 4, i as i64)]).await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await, vec![None]);
        }
        let flushes = c.log_stats().flushes - before;
        assert!(flushes < 32, "{flushes} flushes for 64 concurrent commits");
        // The last write of each partition wins.
        for partition in 0..4 {
            assert_eq!(
                fetch(&c, "simple", "orders", partition),
                60 + partition as i64
            );
        }
    });
}

#[test]
fn offsets_of_empty_groups_expire_after_retention() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let (member, _) = member_with_commits(&c, "g", &[("orders", 0, 1)]).await;
        assert_eq!(
            commit(&c, "simple", -1, "", &[("orders", 0, 1)]).await,
            vec![None]
        );
        let retention = config().offsets_retention_ms;
        let later = coordinator::now_ms() + retention + 1_000;
        // The stable group's offsets stay: its members still consume them.
        assert_eq!(c.expire_offsets(later).await, 1);
        assert_eq!(fetch(&c, "simple", "orders", 0), -1);
        assert_eq!(
            c.group_state("simple"),
            None,
            "an empty group without offsets is removed"
        );
        assert_eq!(fetch(&c, "g", "orders", 0), 1);
        let leave = leave_request("g", &[(&member, None)]);
        assert_eq!(c.leave_group(leave).await.members, vec![None]);
        assert_eq!(c.group_state("g"), Some(GroupState::Empty));
        assert_eq!(c.expire_offsets(coordinator::now_ms()).await, 0);
        assert_eq!(
            c.expire_offsets(coordinator::now_ms() + retention + 1_000)
                .await,
            1
        );
        assert_eq!(c.group_state("g"), None);
        crash(c).await;
        let c = open(&path).await;
        assert_eq!(c.group_count(), 0);
    });
}

#[test]
fn offset_delete_refuses_subscribed_topics_and_removes_others() {
    with_coordinator(|c| async move {
        member_with_commits(&c, "g", &[("orders", 0, 1), ("payments", 0, 2)]).await;
        let request = DeleteOffsetsRequest {
            group_id: s("g"),
            topics: vec![
                TopicPartitions {
                    name: s("orders"),
                    partitions: vec![PartitionId(0)],
                },
                TopicPartitions {
                    name: s("payments"),
                    partitions: vec![PartitionId(0)],
                },
            ],
        };
        let response = c.offset_delete(request).await;
        assert_eq!(response.error, None);
        assert_eq!(
            response.topics[0].partitions[0].error,
            Some(GroupError::GroupSubscribedToTopic)
        );
        assert_eq!(response.topics[1].partitions[0].error, None);
        assert_eq!(fetch(&c, "g", "orders", 0), 1);
        assert_eq!(fetch(&c, "g", "payments", 0), -1);
        let missing = DeleteOffsetsRequest {
            group_id: s("missing"),
            topics: Vec::new(),
        };
        assert_eq!(
            c.offset_delete(missing).await.error,
            Some(GroupError::GroupIdNotFound)
        );
    });
}

#[test]
fn removing_a_topic_drops_its_offsets_in_every_group() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        assert_eq!(
            commit(&c, "a", -1, "", &[("orders", 0, 1), ("payments", 0, 1)]).await,
            vec![None, None]
        );
        assert_eq!(
            commit(&c, "b", -1, "", &[("orders", 3, 1)]).await,
            vec![None]
        );
        c.remove_topic("orders").await;
        assert_eq!(fetch(&c, "a", "orders", 0), -1);
        assert_eq!(fetch(&c, "b", "orders", 3), -1);
        assert_eq!(fetch(&c, "a", "payments", 0), 1);
        crash(c).await;
        let c = open(&path).await;
        assert_eq!(fetch(&c, "a", "orders", 0), -1);
        assert_eq!(fetch(&c, "a", "payments", 0), 1);
    });
}

#[test]
fn a_commit_whose_request_is_dropped_still_completes_and_does_not_stall_others() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        // Poll the commit once (it is now waiting on the disk) and drop it, as
        // the broker does when the client's connection closes.
        let dropped = futures_lite::future::poll_once(c.offset_commit(
            commit_request("simple", -1, "", &[("orders", 0, 11)]),
            &Topics,
        ))
        .await;
        assert!(
            dropped.is_none(),
            "the commit should still be waiting for fdatasync"
        );
        assert_eq!(
            commit(&c, "simple", -1, "", &[("orders", 1, 12)]).await,
            vec![None]
        );
        let visible = {
            let started = std::time::Instant::now();
            loop {
                if fetch(&c, "simple", "orders", 0) == 11
                    || started.elapsed() > Duration::from_secs(5)
                {
                    break fetch(&c, "simple", "orders", 0);
                }
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
        };
        assert_eq!(visible, 11);
        // A delete whose request is dropped does not leave the group Dead.
        let dropped = futures_lite::future::poll_once(c.delete_group("simple")).await;
        assert!(dropped.is_none());
        glommio::timer::sleep(Duration::from_millis(200)).await;
        assert_eq!(c.group_state("simple"), None);
        c.close().await.expect("close");
        crash(c).await;
        let c = open(&path).await;
        assert_eq!(c.group_count(), 0);
    });
}

#[test]
fn transactional_offsets_wait_for_the_commit_marker_and_survive_a_reopen() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let txn = |offset| TxnCommitRequest {
            commit: commit_request("eos", -1, "", &[("orders", 0, offset)]),
            producer_id: 7,
            producer_epoch: 0,
        };
        let c = open(&path).await;
        let outcome = c.txn_offset_commit(txn(5), &Topics).await;
        assert_eq!(outcome[0].partitions[0].error, None);
        assert_eq!(fetch(&c, "eos", "orders", 0), -1, "pending, not committed");
        let mut stable = fetch_request("eos", None);
        stable.require_stable = true;
        assert_eq!(
            c.offset_fetch_group(&stable).error,
            Some(GroupError::UnstableOffsetCommit),
            "KIP-447: a read_committed consumer waits"
        );
        c.complete_txn("eos", 7, false).await.expect("abort");
        assert_eq!(fetch(&c, "eos", "orders", 0), -1, "an abort drops them");
        assert!(c.pending_txn_producers("eos").is_empty());
        c.txn_offset_commit(txn(9), &Topics).await;
        c.log.wait_idle().await;
        drop(c);
        let c = open(&path).await;
        assert_eq!(
            c.pending_txn_producers("eos"),
            vec![7],
            "pending offsets survive"
        );
        c.complete_txn("eos", 7, true).await.expect("commit");
        assert_eq!(fetch(&c, "eos", "orders", 0), 9);
        // The marker again (a coordinator retrying after a crash) changes nothing.
        c.complete_txn("eos", 7, true).await.expect("repeat");
        assert_eq!(fetch(&c, "eos", "orders", 0), 9);
        c.log.wait_idle().await;
        drop(c);
        let c = open(&path).await;
        assert_eq!(
            fetch(&c, "eos", "orders", 0),
            9,
            "the committed offset is durable"
        );
    });
}
