use super::*;

#[test]
fn join_requires_member_id_then_forms_a_generation_with_the_member_as_leader() {
    with_coordinator(|c| async move {
        let joined = join_dynamic(&c, "g").await;
        assert_eq!(joined.error, None);
        assert_eq!(joined.generation_id, 1);
        assert_eq!(joined.leader, joined.member_id);
        assert_eq!(joined.protocol_name.as_deref(), Some("range"));
        assert_eq!(joined.members.len(), 1);
        assert_eq!(c.group_state("g"), Some(GroupState::CompletingRebalance));
        let member = joined.member_id.as_str();
        let synced = c
            .sync_group(sync_request("g", 1, member, &[(member, "p0-3")]))
            .await;
        assert_eq!(synced.error, None);
        assert_eq!(&synced.assignment[..], b"p0-3");
        assert_eq!(c.group_state("g"), Some(GroupState::Stable));
        assert_eq!(heartbeat(&c, "g", 1, member).await, None);
        let described = c.describe_group("g");
        assert_eq!(described.state, Some(GroupState::Stable));
        assert_eq!(described.protocol_data.as_str(), "range");
        assert_eq!(described.members.len(), 1);
        assert_eq!(described.members[0].client_id.as_str(), "test-client");
        assert_eq!(&described.members[0].assignment[..], b"p0-3");
    });
}

#[test]
fn join_v3_without_member_id_joins_in_one_round_trip() {
    with_coordinator(|c| async move {
        let joined = c
            .join_group(JoinRequest {
                member_id_required: false,
                ..join_request("g", "", None)
            })
            .await;
        assert_eq!(joined.error, None);
        assert_eq!(joined.generation_id, 1);
        assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    });
}

#[test]
fn empty_group_id_is_invalid_for_membership_apis() {
    with_coordinator(|c| async move {
        let joined = c.join_group(join_request("", "", None)).await;
        assert_eq!(joined.error, Some(GroupError::InvalidGroupId));
        assert_eq!(
            heartbeat(&c, "", 1, "m").await,
            Some(GroupError::InvalidGroupId)
        );
        let synced = c.sync_group(sync_request("", 1, "m", &[])).await;
        assert_eq!(synced.error, Some(GroupError::InvalidGroupId));
        let too_long = "g".repeat(GROUP_ID_BYTES_MAX + 1);
        assert_eq!(
            c.delete_group(&too_long).await,
            Err(GroupError::InvalidGroupId)
        );
    });
}

#[test]
fn session_timeout_outside_bounds_is_rejected() {
    with_coordinator(|c| async move {
        let request = JoinRequest {
            session_timeout_ms: 1,
            ..join_request("g", "", None)
        };
        let joined = c.join_group(request).await;
        assert_eq!(joined.error, Some(GroupError::InvalidSessionTimeout));
    });
}

#[test]
fn two_members_join_together_and_the_leader_distributes_assignments() {
    with_coordinator(|c| async move {
        let a = spawn_join_dynamic(&c, "g");
        let b = spawn_join_dynamic(&c, "g");
        let (a, b) = (a.await, b.await);
        assert_eq!((a.error, b.error), (None, None));
        assert_eq!(a.generation_id, 1);
        assert_eq!(b.generation_id, 1);
        assert_eq!(a.leader, b.leader);
        let (leader, follower) = if a.leader == a.member_id {
            (a, b)
        } else {
            (b, a)
        };
        assert_eq!(leader.members.len(), 2);
        assert!(follower.members.is_empty());
        let follower_id = follower.member_id.as_str().to_string();
        let leader_id = leader.member_id.as_str().to_string();
        // The follower's SyncGroup waits for the leader's.
        let follower_sync = glommio::spawn_local({
            let c = c.clone();
            let follower_id = follower_id.clone();
            async move { c.sync_group(sync_request("g", 1, &follower_id, &[])).await }
        });
        glommio::timer::sleep(Duration::from_millis(20)).await;
        let leader_sync = c
            .sync_group(sync_request(
                "g",
                1,
                &leader_id,
                &[(&leader_id, "p0,p1"), (&follower_id, "p2,p3")],
            ))
            .await;
        let follower_sync = follower_sync.await;
        assert_eq!(&leader_sync.assignment[..], b"p0,p1");
        assert_eq!(&follower_sync.assignment[..], b"p2,p3");
        assert_eq!(follower_sync.protocol_name.as_deref(), Some("range"));
    });
}

#[test]
fn a_new_member_triggers_a_rebalance_that_bumps_the_generation() {
    with_coordinator(|c| async move {
        let (a, generation) = stable_single_member(&c, "g").await;
        let b = spawn_join_dynamic(&c, "g");
        glommio::timer::sleep(Duration::from_millis(20)).await;
        // Heartbeats during the rebalance tell the member to rejoin.
        assert_eq!(
            heartbeat(&c, "g", generation, &a).await,
            Some(GroupError::RebalanceInProgress)
        );
        let rejoined = c.join_group(join_request("g", &a, None)).await;
        let b = b.await;
        assert_eq!(rejoined.error, None);
        assert_eq!(rejoined.generation_id, generation + 1);
        assert_eq!(b.generation_id, generation + 1);
        // The old leader stays leader.
        assert_eq!(rejoined.leader.as_str(), a);
        assert_eq!(rejoined.members.len(), 2);
        // The previous generation is gone.
        assert_eq!(
            heartbeat(&c, "g", generation, &a).await,
            Some(GroupError::IllegalGeneration)
        );
    });
}

#[test]
fn heartbeat_reports_unknown_member_and_illegal_generation() {
    with_coordinator(|c| async move {
        assert_eq!(
            heartbeat(&c, "missing", 1, "m").await,
            Some(GroupError::UnknownMemberId)
        );
        let (member, generation) = stable_single_member(&c, "g").await;
        assert_eq!(
            heartbeat(&c, "g", generation, "stranger").await,
            Some(GroupError::UnknownMemberId)
        );
        assert_eq!(
            heartbeat(&c, "g", generation + 5, &member).await,
            Some(GroupError::IllegalGeneration)
        );
        assert_eq!(heartbeat(&c, "g", generation, &member).await, None);
        let synced = c
            .sync_group(sync_request("g", generation + 1, &member, &[]))
            .await;
        assert_eq!(synced.error, Some(GroupError::IllegalGeneration));
    });
}

#[test]
fn a_silent_member_is_evicted_after_its_session_timeout() {
    with_coordinator(|c| async move {
        let a = spawn_join_dynamic(&c, "g");
        let b = spawn_join_dynamic(&c, "g");
        let (a, b) = (a.await, b.await);
        let (a_id, b_id) = (
            a.member_id.as_str().to_string(),
            b.member_id.as_str().to_string(),
        );
        for id in [&a_id, &b_id] {
            let c = c.clone();
            let id = id.clone();
            glommio::spawn_local(async move { c.sync_group(sync_request("g", 1, &id, &[])).await })
                .detach();
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
        let leader = a.leader.as_str().to_string();
        c.sync_group(sync_request("g", 1, &leader, &[(&a_id, "a"), (&b_id, "b")]))
            .await;
        assert_eq!(c.group_state("g"), Some(GroupState::Stable));
        // Only A heartbeats; B falls silent.
        let started = std::time::Instant::now();
        let code = loop {
            let code = heartbeat(&c, "g", 1, &a_id).await;
            if code.is_some() || started.elapsed() > Duration::from_secs(5) {
                break code;
            }
            glommio::timer::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(code, Some(GroupError::RebalanceInProgress));
        assert!(started.elapsed() >= Duration::from_millis(SESSION_MS as u64 - 100));
        let rejoined = c.join_group(join_request("g", &a_id, None)).await;
        assert_eq!(rejoined.generation_id, 2);
        assert_eq!(rejoined.members.len(), 1);
        assert_eq!(
            heartbeat(&c, "g", 2, &b_id).await,
            Some(GroupError::UnknownMemberId)
        );
    });
}

#[test]
fn leave_group_by_instance_id_removes_the_static_member() {
    with_coordinator(|c| async move {
        let a = c
            .join_group(join_request("g", "", Some("instance-a")))
            .await;
        assert_eq!(a.error, None);
        let request = leave_request("g", &[("", Some("instance-a")), ("unknown", None)]);
        let left = c.leave_group(request).await;
        assert_eq!(left.error, None);
        assert_eq!(left.members, vec![None, Some(GroupError::UnknownMemberId)]);
        assert_eq!(c.group_state("g"), Some(GroupState::Empty));
    });
}

#[test]
fn a_member_that_does_not_rejoin_within_the_rebalance_timeout_is_removed() {
    with_coordinator(|c| async move {
        let (leader, generation) = stable_single_member(&c, "g").await;
        let follower = spawn_join_dynamic(&c, "g");
        glommio::timer::sleep(Duration::from_millis(20)).await;
        let rejoined = c.join_group(join_request("g", &leader, None)).await;
        let follower = follower.await;
        assert_eq!(rejoined.generation_id, generation + 1);
        let follower_id = follower.member_id.as_str().to_string();
        let follower_sync = glommio::spawn_local({
            let c = c.clone();
            let follower_id = follower_id.clone();
            async move {
                c.sync_group(sync_request("g", generation + 1, &follower_id, &[]))
                    .await
            }
        });
        glommio::timer::sleep(Duration::from_millis(10)).await;
        c.sync_group(sync_request("g", generation + 1, &leader, &[]))
            .await;
        follower_sync.await;
        assert_eq!(c.group_state("g"), Some(GroupState::Stable));
        // The leader rejoins (a new rebalance); the follower keeps heartbeating but never rejoins.
        let started = std::time::Instant::now();
        let done = Rc::new(std::cell::Cell::new(false));
        let leader_join = glommio::spawn_local({
            let c = c.clone();
            let leader = leader.clone();
            let done = done.clone();
            async move {
                let response = c.join_group(join_request("g", &leader, None)).await;
                done.set(true);
                response
            }
        });
        let mut saw_rebalance = false;
        while !done.get() && started.elapsed() < Duration::from_secs(10) {
            saw_rebalance |= heartbeat(&c, "g", generation + 1, &follower_id).await
                == Some(GroupError::RebalanceInProgress);
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        let leader_join = leader_join.await;
        assert!(saw_rebalance);
        assert_eq!(leader_join.error, None);
        assert_eq!(leader_join.generation_id, generation + 2);
        assert_eq!(
            leader_join.members.len(),
            1,
            "the follower was dropped from the generation"
        );
        // The group waited for the longest rebalance timeout among its members (2 s).
        assert!(
            started.elapsed() >= Duration::from_millis(1_900),
            "completed after {:?}",
            started.elapsed()
        );
        assert_eq!(
            heartbeat(&c, "g", generation + 2, &follower_id).await,
            Some(GroupError::UnknownMemberId)
        );
    });
}

#[test]
fn a_member_id_never_used_does_not_hold_up_the_rebalance_forever() {
    with_coordinator(|c| async move {
        let (a, _) = stable_single_member(&c, "g").await;
        // A client gets a member id and vanishes.
        let ghost = c.join_group(join_request("g", "", None)).await;
        assert_eq!(ghost.error, Some(GroupError::MemberIdRequired));
        // The leader rejoins: the rebalance waits for the pending member until its session times out.
        let started = std::time::Instant::now();
        let rejoined = c.join_group(join_request("g", &a, None)).await;
        assert_eq!(rejoined.error, None);
        assert_eq!(rejoined.generation_id, 2);
        assert_eq!(rejoined.members.len(), 1);
        assert!(started.elapsed() < Duration::from_millis(SESSION_MS as u64 + 1_000));
        let late = c
            .join_group(join_request("g", &ghost.member_id, None))
            .await;
        assert_eq!(late.error, Some(GroupError::UnknownMemberId));
    });
}
