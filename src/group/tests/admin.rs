use super::*;

#[test]
fn delete_group_needs_an_existing_empty_group() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        assert_eq!(
            c.delete_group("missing").await,
            Err(GroupError::GroupIdNotFound)
        );
        let (member, _) = member_with_commits(&c, "g", &[("orders", 0, 1)]).await;
        assert_eq!(c.delete_group("g").await, Err(GroupError::NonEmptyGroup));
        let leave = leave_request("g", &[(&member, None)]);
        assert_eq!(c.leave_group(leave).await.members[0], None);
        assert_eq!(c.delete_group("g").await, Ok(()));
        assert_eq!(fetch(&c, "g", "orders", 0), -1);
        // Described as Dead; the broker decides per version whether that is an error.
        assert_eq!(c.describe_group("g").state, Some(GroupState::Dead));
        assert_eq!(
            c.describe_group("g").error,
            Some(GroupError::GroupIdNotFound)
        );
        crash(c).await;
        let c = open(&path).await;
        assert_eq!(c.group_count(), 0);
    });
}

#[test]
fn list_groups_filters_by_state_and_type() {
    with_coordinator(|c| async move {
        stable_single_member(&c, "stable").await;
        assert_eq!(
            commit(&c, "simple", -1, "", &[("orders", 0, 1)]).await,
            vec![None]
        );
        let stable = c.list_groups(&[s("stable")], &[]);
        assert_eq!(stable.len(), 1);
        assert_eq!(stable[0].group_id.as_str(), "stable");
        assert_eq!(c.list_groups(&[s("Empty")], &[s("Classic")]).len(), 1);
        assert!(c.list_groups(&[], &[s("consumer")]).is_empty());
        assert_eq!(c.list_groups(&[], &[]).len(), 2);
    });
}

#[test]
fn shard_for_group_is_stable_and_in_range() {
    assert_eq!(
        shard_for_group("orders-consumers", 8),
        shard_for_group("orders-consumers", 8)
    );
    for shards in 1..16 {
        assert!(shard_for_group("g", shards) < shards);
    }
}
