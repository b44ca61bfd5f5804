use super::*;

/// Static member `instance-a` and a dynamic member join `g` together and sync
/// generation 1 with assignments `for-a` and `for-b`; returns their member ids.
async fn static_a_and_dynamic_b_synced(c: &Rc<GroupCoordinator>) -> (String, String) {
    // Static members skip the member-id round trip.
    let a = glommio::spawn_local({
        let c = c.clone();
        async move {
            c.join_group(join_request("g", "", Some("instance-a")))
                .await
        }
    });
    let b = spawn_join_dynamic(c, "g");
    let (a, b) = (a.await, b.await);
    assert_eq!((a.error, b.error), (None, None));
    let (a_id, b_id) = (
        a.member_id.as_str().to_string(),
        b.member_id.as_str().to_string(),
    );
    let follower = if a.leader.as_str() == a_id {
        b_id.clone()
    } else {
        a_id.clone()
    };
    let leader = a.leader.as_str().to_string();
    let pending = glommio::spawn_local({
        let c = c.clone();
        async move { c.sync_group(sync_request("g", 1, &follower, &[])).await }
    });
    glommio::timer::sleep(Duration::from_millis(10)).await;
    c.sync_group(sync_request(
        "g",
        1,
        &leader,
        &[(&a_id, "for-a"), (&b_id, "for-b")],
    ))
    .await;
    pending.await;
    (a_id, b_id)
}

#[test]
fn a_static_member_rejoining_replaces_the_old_member_without_a_rebalance() {
    with_coordinator(|c| async move {
        let (a_id, b_id) = static_a_and_dynamic_b_synced(&c).await;
        // A restarts: same instance id, no member id.
        let rejoined = c
            .join_group(join_request("g", "", Some("instance-a")))
            .await;
        assert_eq!(rejoined.error, None);
        assert_eq!(rejoined.generation_id, 1, "no rebalance");
        assert_ne!(rejoined.member_id.as_str(), a_id);
        assert_eq!(c.group_state("g"), Some(GroupState::Stable));
        assert_eq!(heartbeat(&c, "g", 1, &b_id).await, None);
        let new_a = rejoined.member_id.as_str().to_string();
        let synced = c
            .sync_group(SyncRequest {
                group_instance_id: Some(s("instance-a")),
                ..sync_request("g", 1, &new_a, &[])
            })
            .await;
        assert_eq!(&synced.assignment[..], b"for-a");
        // The old incarnation is fenced.
        let old = c
            .heartbeat(heartbeat_request("g", 1, &a_id, Some("instance-a")))
            .await;
        assert_eq!(old, Err(GroupError::FencedInstanceId));
        let old_commit = c
            .offset_commit(
                CommitRequest {
                    group_instance_id: Some(s("instance-a")),
                    ..commit_request("g", 1, &a_id, &[("orders", 0, 5)])
                },
                &Topics,
            )
            .await;
        assert_eq!(
            old_commit[0].partitions[0].error,
            Some(GroupError::FencedInstanceId)
        );
    });
}

#[test]
fn a_static_member_replaced_during_completing_rebalance_forces_a_new_rebalance() {
    with_coordinator(|c| async move {
        // B joins first and leads; A is a static follower.
        let b = spawn_join_dynamic(&c, "g");
        glommio::timer::sleep(Duration::from_millis(5)).await;
        let a = c
            .join_group(join_request("g", "", Some("instance-a")))
            .await;
        let b = b.await;
        assert_eq!(a.generation_id, 1);
        assert_eq!(b.leader, b.member_id);
        assert_eq!(c.group_state("g"), Some(GroupState::CompletingRebalance));
        let old_id = a.member_id.as_str().to_string();
        // The old incarnation of A waits on SyncGroup when the new one arrives.
        let old_sync = glommio::spawn_local({
            let c = c.clone();
            let old_id = old_id.clone();
            async move {
                let request = SyncRequest {
                    group_instance_id: Some(s("instance-a")),
                    ..sync_request("g", 1, &old_id, &[])
                };
                c.sync_group(request).await
            }
        });
        glommio::timer::sleep(Duration::from_millis(10)).await;
        let new_a = glommio::spawn_local({
            let c = c.clone();
            async move {
                c.join_group(join_request("g", "", Some("instance-a")))
                    .await
            }
        });
        assert_eq!(old_sync.await.error, Some(GroupError::FencedInstanceId));
        assert_eq!(c.group_state("g"), Some(GroupState::PreparingRebalance));
        let b_rejoined = c.join_group(join_request("g", &b.member_id, None)).await;
        let new_a = new_a.await;
        assert_eq!(new_a.error, None);
        assert_eq!(new_a.generation_id, 2);
        assert_eq!(b_rejoined.generation_id, 2);
        assert_ne!(new_a.member_id.as_str(), old_id);
    });
}
