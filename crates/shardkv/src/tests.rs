//! The shard group's state machine, one command at a time: configurations, hand-over of
//! shards with their exactly-once records, deletion, and what is served when.

use std::collections::BTreeMap;

use flotilla_kv::{KvCommand, KvReply};
use flotilla_rsm::{ApplyCtx, SessionLimits, StateMachine};
use flotilla_shardctrler::{Gid, ShardConfig};

use crate::{key_shard, PullCursor, ShardCommand, ShardKv, ShardPage, ShardReply, ShardState};

const NSHARDS: usize = 4;

fn config(num: u64, shards: [Gid; NSHARDS]) -> ShardConfig {
    let mut groups = BTreeMap::new();
    for &g in &shards {
        if g != 0 {
            groups.insert(g, vec![format!("server-{g}-0")]);
        }
    }
    ShardConfig {
        num,
        shards: shards.to_vec(),
        groups,
    }
}

/// A key in shard `s`.
fn key_in(s: usize) -> Vec<u8> {
    (0..)
        .map(|i| format!("k{i}").into_bytes())
        .find(|k| key_shard(k, NSHARDS) == s)
        .unwrap()
}

fn op(client: u64, seq: u64, op: KvCommand) -> ShardCommand {
    ShardCommand::Op {
        client,
        seq,
        after_ms: 1,
        op,
    }
}

fn append(s: usize, v: &str) -> KvCommand {
    KvCommand::Append {
        key: key_in(s),
        value: v.as_bytes().to_vec().into(),
    }
}

fn get(s: usize) -> KvCommand {
    KvCommand::Get { key: key_in(s) }
}

fn value(r: ShardReply) -> Vec<u8> {
    match r {
        ShardReply::Kv(KvReply::Value(v)) => v.unwrap_or_default(),
        other => panic!("expected a value, got {other:?}"),
    }
}

/// Applies `cmd`, then checks the machine's invariants.
fn apply(m: &mut ShardKv, cmd: ShardCommand) -> ShardReply {
    let r = m.apply(cmd, &ApplyCtx::zero());
    m.check_invariants(flotilla_rsm::CheckDepth::Full);
    r
}

/// Every page of `shard` from `from` on `to`'s cursor, each installed as soon as cut, until
/// the last; the pages.
pub(crate) fn transfer(
    from: &ShardKv,
    to: &mut ShardKv,
    shard: usize,
    page_bytes: usize,
) -> Vec<ShardPage> {
    let num = to.config().num;
    let mut pages = Vec::new();
    while let Some((_, at)) = to.pull_cursors().get(&shard).cloned() {
        let page = from
            .handoff_page(num, shard, &at, page_bytes)
            .expect("frozen there");
        pages.push(page.clone());
        assert_eq!(
            apply(to, ShardCommand::InstallPage { num, shard, page }),
            ShardReply::Done
        );
        assert!(pages.len() < 100_000, "the pull makes progress");
    }
    pages
}

fn install(num: u64, shard: usize, page: &ShardPage) -> ShardCommand {
    ShardCommand::InstallPage {
        num,
        shard,
        page: page.clone(),
    }
}

/// Keys `{s}` hash-tagged into shard `s`'s tag, `n` of them: `<tag>-<i>`.
fn keys_in(s: usize, n: usize) -> Vec<Vec<u8>> {
    let tag = String::from_utf8(key_in(s)).unwrap();
    (0..n)
        .map(|i| format!("{{{tag}}}-{i:03}").into_bytes())
        .collect()
}

/// Groups 1 and 2 after configuration 1 (everything on group 1), then configuration 2 moving
/// shards 2 and 3 to group 2.
pub(crate) fn two_groups_after_move() -> (ShardKv, ShardKv) {
    let (mut a, mut b) = (ShardKv::new(1, NSHARDS), ShardKv::new(2, NSHARDS));
    let c1 = config(1, [1, 1, 1, 1]);
    let c2 = config(2, [1, 1, 2, 2]);
    for m in [&mut a, &mut b] {
        assert_eq!(
            m.apply(ShardCommand::Config(c1.clone()), &ApplyCtx::zero()),
            ShardReply::Done
        );
    }
    assert_eq!(
        a.apply(op(7, 1, append(2, "x")), &ApplyCtx::zero()),
        ShardReply::Kv(KvReply::Len(1))
    );
    for m in [&mut a, &mut b] {
        assert_eq!(
            m.apply(ShardCommand::Config(c2.clone()), &ApplyCtx::zero()),
            ShardReply::Done
        );
    }
    (a, b)
}

#[test]
fn hash_tags_keep_related_keys_in_one_shard() {
    let n = 1024;
    assert_eq!(
        key_shard(b"{user:7}.name", n),
        key_shard(b"{user:7}.mail", n)
    );
    assert_eq!(key_shard(b"{user:7}.name", n), key_shard(b"user:7", n));
    // An empty tag is no tag: the whole key is hashed.
    assert_ne!(key_shard(b"{}a", n), key_shard(b"{}b", n));
    // Plain keys spread: 1000 keys over 10 shards leave none empty.
    let mut counts = [0; 10];
    for i in 0..1000 {
        counts[key_shard(format!("key:{i}").as_bytes(), 10)] += 1;
    }
    assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
}

#[test]
fn the_first_configuration_serves_empty_shards_at_once() {
    let mut a = ShardKv::new(1, NSHARDS);
    assert_eq!(
        a.apply(op(1, 1, get(0)), &ApplyCtx::zero()),
        ShardReply::WrongGroup
    );
    a.apply(
        ShardCommand::Config(config(1, [1, 1, 1, 1])),
        &ApplyCtx::zero(),
    );
    assert!(a.settled());
    assert_eq!(value(a.apply(op(1, 1, get(0)), &ApplyCtx::zero())), b"");
}

#[test]
fn a_moved_shard_is_frozen_at_the_old_owner_and_not_served_at_the_new_one_until_installed() {
    let (mut a, mut b) = two_groups_after_move();
    assert_eq!(a.shard_states()[&2], ShardState::Handoff);
    assert_eq!(b.shard_states()[&2], ShardState::Pulling);
    // Never served after it was given away, nor before it arrived.
    assert_eq!(
        a.apply(op(7, 2, append(2, "y")), &ApplyCtx::zero()),
        ShardReply::WrongGroup
    );
    assert_eq!(
        b.apply(op(7, 2, append(2, "y")), &ApplyCtx::zero()),
        ShardReply::NotReady
    );
    assert_eq!(
        b.apply(op(8, 1, get(2)), &ApplyCtx::zero()),
        ShardReply::NotReady
    );
    // Shards the change did not move are served throughout.
    assert_eq!(
        a.apply(op(7, 3, append(0, "z")), &ApplyCtx::zero()),
        ShardReply::Kv(KvReply::Len(1))
    );
    assert!(!a.settled() && !b.settled());
    // Neither may move on while its hand-over is pending.
    let c3 = config(3, [1, 1, 1, 1]);
    assert_eq!(
        a.apply(ShardCommand::Config(c3.clone()), &ApplyCtx::zero()),
        ShardReply::NotReady
    );
    assert_eq!(
        b.apply(ShardCommand::Config(c3), &ApplyCtx::zero()),
        ShardReply::NotReady
    );
    assert_eq!(a.config().num, 2);
}

#[test]
fn a_shard_moves_with_its_exactly_once_records() {
    let (a, mut b) = two_groups_after_move();
    assert_eq!(b.pulls(), BTreeMap::from([(1, vec![2, 3])]));
    // Nothing before the old owner reaches the configuration, nor of shards it did not
    // freeze; then the frozen shards.
    assert_eq!(a.handoff_page(1, 2, &PullCursor::Start, 1000), None);
    assert_eq!(a.handoff_page(2, 0, &PullCursor::Start, 1000), None);
    for s in [2, 3] {
        assert_eq!(transfer(&a, &mut b, s, 1000).len(), 1);
    }
    assert_eq!(b.shard_states()[&2], ShardState::Notify);
    // The client's append (7, 1) went through group 1; retried at group 2 it is answered from
    // the records that came with the shard, not applied again.
    assert_eq!(
        b.apply(op(7, 1, append(2, "x")), &ApplyCtx::zero()),
        ShardReply::Kv(KvReply::Len(1))
    );
    assert_eq!(value(b.apply(op(9, 1, get(2)), &ApplyCtx::zero())), b"x");
    // An older operation of that client is stale, a newer one applies.
    assert_eq!(
        b.apply(op(7, 0, append(2, "old")), &ApplyCtx::zero()),
        ShardReply::Stale
    );
    assert_eq!(
        b.apply(op(7, 2, append(2, "y")), &ApplyCtx::zero()),
        ShardReply::Kv(KvReply::Len(2))
    );
}

#[test]
fn the_old_copy_is_deleted_only_when_the_new_owner_has_it_and_then_both_settle() {
    let (mut a, mut b) = two_groups_after_move();
    assert!(!a.deleted(2, &[2, 3]));
    // A repeated or late page changes nothing once installed.
    let pages: Vec<ShardPage> = [2, 3]
        .iter()
        .flat_map(|&s| transfer(&a, &mut b, s, 1000))
        .collect();
    b.apply(op(7, 2, append(2, "y")), &ApplyCtx::zero());
    for (s, page) in [2, 3].into_iter().zip(&pages) {
        apply(&mut b, install(2, s, page));
    }
    assert_eq!(value(b.apply(op(9, 1, get(2)), &ApplyCtx::zero())), b"xy");
    assert_eq!(b.notices(), BTreeMap::from([(1, vec![2, 3])]));
    a.apply(
        ShardCommand::Delete {
            num: 2,
            shards: vec![2, 3],
        },
        &ApplyCtx::zero(),
    );
    assert!(a.deleted(2, &[2, 3]));
    assert!(a.settled());
    assert_eq!(a.shard_states().len(), 2, "the handed-off data is gone");
    b.apply(
        ShardCommand::Confirmed {
            num: 2,
            shards: vec![2, 3],
        },
        &ApplyCtx::zero(),
    );
    assert!(b.settled());
    // Both may now move on, in order only.
    assert_eq!(
        a.apply(
            ShardCommand::Config(config(4, [1, 1, 1, 1])),
            &ApplyCtx::zero()
        ),
        ShardReply::NotReady
    );
    assert_eq!(
        a.apply(
            ShardCommand::Config(config(3, [1, 1, 1, 2])),
            &ApplyCtx::zero()
        ),
        ShardReply::Done
    );
    assert!(
        a.deleted(2, &[2, 3]),
        "a later configuration implies deleted"
    );
}

#[test]
fn a_configuration_that_would_orphan_a_held_shard_is_refused() {
    let mut a = ShardKv::new(1, NSHARDS);
    a.apply(
        ShardCommand::Config(config(1, [1, 1, 1, 1])),
        &ApplyCtx::zero(),
    );
    assert_eq!(
        a.apply(
            ShardCommand::Config(config(2, [0, 0, 0, 0])),
            &ApplyCtx::zero()
        ),
        ShardReply::NotReady
    );
    assert_eq!(a.config().num, 1);
    assert!(a.apply(op(1, 1, get(0)), &ApplyCtx::zero()) != ShardReply::WrongGroup);
}

#[test]
fn snapshots_mid_migration_restore_the_same_state() {
    let (a, mut b) = two_groups_after_move();
    transfer(&a, &mut b, 2, 1000);
    for m in [&a, &b] {
        let mut r = ShardKv::new(m.gid(), NSHARDS);
        r.restore(&m.snapshot()).unwrap();
        assert_eq!(r.snapshot(), m.snapshot());
        assert_eq!(r.shard_states(), m.shard_states());
        assert_eq!(r.config(), m.config());
        assert_eq!(r.prev(), m.prev());
        assert_eq!(r.pull_cursors(), m.pull_cursors());
    }
    let mut r = ShardKv::new(2, NSHARDS);
    assert!(r.restore(b"garbage").is_err());
}

/// Group 1 holds shard 2 with `n` keys of `len`-byte values, each appended by its own client
/// (so as many exactly-once records), and one value of `big` bytes; then configuration 2
/// moves shards 2 and 3 to group 2.
pub(crate) fn big_shard(n: usize, len: usize, big: usize) -> (ShardKv, ShardKv) {
    let (mut a, mut b) = (ShardKv::new(1, NSHARDS), ShardKv::new(2, NSHARDS));
    let c1 = config(1, [1, 1, 1, 1]);
    for m in [&mut a, &mut b] {
        assert_eq!(apply(m, ShardCommand::Config(c1.clone())), ShardReply::Done);
    }
    for (i, key) in keys_in(2, n).into_iter().enumerate() {
        let value = vec![b'a' + (i % 26) as u8; len];
        let cmd = op(
            100 + i as u64,
            1,
            KvCommand::Append {
                key,
                value: value.into(),
            },
        );
        assert_eq!(apply(&mut a, cmd), ShardReply::Kv(KvReply::Len(len as u64)));
    }
    let put = KvCommand::Put {
        key: key_in(2),
        value: vec![b'z'; big].into(),
    };
    assert_eq!(apply(&mut a, op(99, 5, put)), ShardReply::Kv(KvReply::Done));
    let c2 = config(2, [1, 1, 2, 2]);
    for m in [&mut a, &mut b] {
        assert_eq!(apply(m, ShardCommand::Config(c2.clone())), ShardReply::Done);
    }
    (a, b)
}

#[test]
fn a_large_shard_moves_in_pages_each_within_the_page_size_and_a_large_value_alone() {
    let (n, len, big, page_bytes) = (60, 50, 1000, 300);
    let (a, mut b) = big_shard(n, len, big);
    let pages = transfer(&a, &mut b, 2, page_bytes);
    // 61 keys of ~60 bytes and 62 records of 32 bytes in pages of 300 bytes.
    assert!(pages.len() > 15, "{} pages", pages.len());
    for (i, p) in pages.iter().enumerate() {
        assert!(
            p.data_len() <= page_bytes || p.items() == 1,
            "page {i} holds {} bytes in {} items",
            p.data_len(),
            p.items()
        );
        assert_eq!(
            p.last,
            i + 1 == pages.len(),
            "only the final page is the last"
        );
        assert!(p.items() > 0 || p.last, "page {i} is empty");
        // The message that carries it: the page plus a few bytes per item and an envelope.
        let reply = crate::ShardMsg::PullReply {
            num: 2,
            shard: 2,
            page: Some(p.clone()),
        };
        let encoded = postcard::to_allocvec(&reply).unwrap().len();
        assert!(
            encoded <= p.data_len().max(page_bytes) + 8 * p.items() + 64,
            "page {i} travels in {encoded} bytes"
        );
    }
    let alone: Vec<&ShardPage> = pages.iter().filter(|p| p.data_len() > page_bytes).collect();
    assert_eq!(alone.len(), 1, "the one large value, alone in its page");
    assert_eq!(alone[0].items(), 1);
    // Every key arrived with its value.
    assert_eq!(b.shard_states()[&2], ShardState::Notify);
    assert_eq!(b.shard_keys()[&2], n + 1);
    for (i, key) in keys_in(2, n).into_iter().enumerate() {
        let got = value(apply(&mut b, op(1, 1, KvCommand::Get { key })));
        assert_eq!(got, vec![b'a' + (i % 26) as u8; len]);
    }
    assert_eq!(value(apply(&mut b, op(1, 1, get(2)))), vec![b'z'; big]);
}

#[test]
fn exactly_once_records_spanning_pages_all_arrive() {
    let (n, len) = (40, 10);
    let (a, mut b) = big_shard(n, len, 10);
    // Pages of two items: the 41 records alone take 21 pages.
    let pages = transfer(&a, &mut b, 2, 2 * crate::SESSION_RECORD_BYTES);
    let after_records = (pages.iter())
        .filter(|p| matches!(p.from, PullCursor::Session(_)))
        .count();
    assert!(
        after_records > 10,
        "records travelled in {} pages",
        after_records + 1
    );
    // Each client's append, retried at the new owner, is answered from its record and not
    // applied again; an older one is stale.
    for (i, key) in keys_in(2, n).into_iter().enumerate() {
        let client = 100 + i as u64;
        let value = vec![b'a' + (i % 26) as u8; len];
        let retry = op(
            client,
            1,
            KvCommand::Append {
                key: key.clone(),
                value: value.into(),
            },
        );
        assert_eq!(
            apply(&mut b, retry),
            ShardReply::Kv(KvReply::Len(len as u64))
        );
        let old = op(client, 0, KvCommand::Get { key: key.clone() });
        assert_eq!(value_len(apply(&mut b, old)), len);
    }
    assert_eq!(
        apply(&mut b, op(99, 4, append(2, "old"))),
        ShardReply::Stale
    );
}

fn value_len(r: ShardReply) -> usize {
    value(r).len()
}

#[test]
fn pages_out_of_order_duplicated_stale_or_malformed_are_ignored() {
    let (a, mut b) = big_shard(30, 20, 10);
    let num = b.config().num;
    let cursor = |b: &ShardKv| b.pull_cursors()[&2].1.clone();
    let p0 = a.handoff_page(num, 2, &PullCursor::Start, 100).unwrap();
    let p1 = a.handoff_page(num, 2, &p0.end().unwrap(), 100).unwrap();
    assert!(!p0.last && !p1.last);
    // The second page first: ignored.
    let before = b.snapshot();
    apply(&mut b, install(num, 2, &p1));
    assert_eq!(b.snapshot(), before);
    assert_eq!(cursor(&b), PullCursor::Start);
    // A page of another configuration, or of another shard's cursor: ignored.
    apply(&mut b, install(num - 1, 2, &p0));
    apply(&mut b, install(num, 0, &p0));
    assert_eq!(b.snapshot(), before);
    // In order: applied.
    apply(&mut b, install(num, 2, &p0));
    assert_eq!(cursor(&b), p0.end().unwrap());
    let after_p0 = b.snapshot();
    assert_ne!(after_p0, before);
    // The same page again (a duplicate, or another leader's proposal of it): ignored.
    apply(&mut b, install(num, 2, &p0));
    assert_eq!(b.snapshot(), after_p0);
    // The same start cut to another size (another leader's setting) is a duplicate too.
    let p0_small = a.handoff_page(num, 2, &PullCursor::Start, 30).unwrap();
    apply(&mut b, install(num, 2, &p0_small));
    assert_eq!(b.snapshot(), after_p0);
    // A page whose items are out of order within itself is no page of this build: ignored.
    let bad = malformed(&p1);
    assert_eq!(bad.end(), None);
    apply(&mut b, install(num, 2, &bad));
    assert_eq!(b.snapshot(), after_p0);
    apply(&mut b, install(num, 2, &p1));
    assert_eq!(cursor(&b), p1.end().unwrap());
    // The rest, then a late page once installed: ignored.
    transfer(&a, &mut b, 2, 100);
    assert_eq!(b.shard_states()[&2], ShardState::Notify);
    let done = b.snapshot();
    apply(&mut b, install(num, 2, &p0));
    assert_eq!(b.snapshot(), done);
}

/// `page` with its first two keys swapped (through the wire encoding: its fields are the
/// machine's).
fn malformed(page: &ShardPage) -> ShardPage {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Mirror {
        from: PullCursor,
        kv: Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>,
        sessions: Vec<(u64, u64, u64, KvReply)>,
        expired_through_ms: Option<u64>,
        last: bool,
    }
    let bytes = postcard::to_allocvec(page).unwrap();
    let mut m: Mirror = postcard::from_bytes(&bytes).unwrap();
    assert!(m.kv.len() >= 2, "a page of two keys at least");
    m.kv.swap(0, 1);
    postcard::from_bytes(&postcard::to_allocvec(&m).unwrap()).unwrap()
}

#[test]
fn a_pulling_shard_is_not_served_until_its_last_page_is_applied() {
    let (a, mut b) = big_shard(20, 20, 10);
    let num = b.config().num;
    let mut pages = 0;
    while let Some((_, at)) = b.pull_cursors().get(&2).cloned() {
        assert_eq!(apply(&mut b, op(1, 1, get(2))), ShardReply::NotReady);
        assert_eq!(
            apply(&mut b, op(1, 1, append(2, "w"))),
            ShardReply::NotReady
        );
        assert_eq!(b.shard_states()[&2], ShardState::Pulling);
        assert!(!b.settled());
        let page = a.handoff_page(num, 2, &at, 64).unwrap();
        apply(&mut b, install(num, 2, &page));
        pages += 1;
    }
    assert!(pages > 5, "{pages} pages");
    assert_eq!(b.shard_states()[&2], ShardState::Notify);
    assert_eq!(value(apply(&mut b, op(1, 1, get(2)))), vec![b'z'; 10]);
    // The shard still to pull from the same owner is not affected by the other's arrival.
    assert_eq!(b.shard_states()[&3], ShardState::Pulling);
}

#[test]
fn a_snapshot_taken_mid_pull_keeps_the_progress_and_the_pull_resumes_there() {
    let (a, mut b) = big_shard(40, 30, 500);
    let num = b.config().num;
    let page_bytes = 200;
    let mut done = 0;
    for _ in 0..5 {
        let at = b.pull_cursors()[&2].1.clone();
        let page = a.handoff_page(num, 2, &at, page_bytes).unwrap();
        apply(&mut b, install(num, 2, &page));
        done += 1;
    }
    let mut r = ShardKv::new(2, NSHARDS);
    r.restore(&b.snapshot()).unwrap();
    r.check_invariants(flotilla_rsm::CheckDepth::Full);
    assert_eq!(r.pull_cursors(), b.pull_cursors());
    assert_ne!(r.pull_cursors()[&2].1, PullCursor::Start);
    assert_eq!(r.shard_keys(), b.shard_keys());
    assert_eq!(r.snapshot(), b.snapshot());
    // The restored replica goes on from the cursor, with the pages the rest would get, from
    // an old owner's replica restored from its own snapshot too.
    let mut ra = ShardKv::new(1, NSHARDS);
    ra.restore(&a.snapshot()).unwrap();
    ra.check_invariants(flotilla_rsm::CheckDepth::Full);
    assert_eq!(ra.snapshot(), a.snapshot());
    let rest_r = transfer(&ra, &mut r, 2, page_bytes);
    let rest_b = transfer(&a, &mut b, 2, page_bytes);
    assert_eq!(rest_r, rest_b);
    let mut fresh = big_shard(40, 30, 500).1;
    let all = transfer(&a, &mut fresh, 2, page_bytes);
    assert_eq!(all.len(), done + rest_r.len());
    assert_eq!(r.snapshot(), b.snapshot());
    assert_eq!(r.shard_keys()[&2], 41);
    assert_eq!(r.shard_states()[&2], ShardState::Notify);
}

/// An entry applied at replicated time `now_ms`, with an idle limit of 1 s and at most `max`
/// records per shard.
fn at(now_ms: u64, max: u64) -> ApplyCtx {
    ApplyCtx {
        now_ms,
        index: 0,
        limits: SessionLimits {
            idle_ms: 1_000,
            max_sessions: max,
        },
    }
}

fn stamped(client: u64, seq: u64, after_ms: u64, op: KvCommand) -> ShardCommand {
    ShardCommand::Op {
        client,
        seq,
        after_ms,
        op,
    }
}

/// Issue 16: a shard's exactly-once records expire by the replicated clock (idle past the
/// limit, or least recently active past the maximum), and a retry from a client whose record
/// expired is refused, not applied a second time, here or at the shard's next owner (the
/// shard's watermark moves with it).
#[test]
fn per_shard_records_expire_and_an_expired_client_is_refused() {
    let mut a = ShardKv::new(1, NSHARDS);
    a.apply(ShardCommand::Config(config(1, [1, 1, 1, 1])), &at(0, 10));
    assert_eq!(
        a.apply(stamped(7, 1, 10, append(2, "x")), &at(10, 10)),
        ShardReply::Kv(KvReply::Len(1))
    );
    assert_eq!(a.shard_sessions()[&2], 1);
    // Client 8 writes shard 0 two seconds later: client 7's record (idle 2 s) goes, from
    // shard 2 although nothing touched it.
    let r = a.apply(stamped(8, 1, 2_000, append(0, "y")), &at(2_010, 10));
    assert_eq!(r, ShardReply::Kv(KvReply::Len(1)));
    assert_eq!(a.shard_sessions()[&2], 0);
    // Client 7's retry of its append (reply lost): refused, the value is unchanged.
    let retry = stamped(7, 1, 10, append(2, "x"));
    assert_eq!(a.apply(retry.clone(), &at(2_020, 10)), ShardReply::Expired);
    assert_eq!(
        a.apply(stamped(7, 1, 0, append(2, "x")), &at(2_020, 10)),
        ShardReply::Unstamped
    );
    assert_eq!(value(a.apply(op(9, 1, get(2)), &at(2_020, 10))), b"x");
    // The shard moves to group 2 with its watermark: the retry is refused there too.
    let mut b = ShardKv::new(2, NSHARDS);
    b.apply(ShardCommand::Config(config(1, [1, 1, 1, 1])), &at(0, 10));
    let c2 = config(2, [1, 1, 2, 1]);
    a.apply(ShardCommand::Config(c2.clone()), &at(2_030, 10));
    b.apply(ShardCommand::Config(c2), &at(2_030, 10));
    transfer(&a, &mut b, 2, 64);
    assert_eq!(b.apply(retry, &at(2_050, 10)), ShardReply::Expired);
    // A new operation stamped with a time heard since starts a new record.
    let r = b.apply(stamped(7, 2, 2_040, append(2, "z")), &at(2_050, 10));
    assert_eq!(r, ShardReply::Kv(KvReply::Len(2)));
    // Past the maximum, the least recently active record of the shard goes.
    for c in 20..23 {
        b.apply(stamped(c, 1, 2_060 + c, append(2, "w")), &at(2_060 + c, 2));
    }
    assert_eq!(b.shard_sessions()[&2], 2);
}

fn redis(line: &str) -> KvCommand {
    KvCommand::Redis {
        args: line.split(' ').map(flotilla_kv::Arg::from).collect(),
        route: None,
    }
}

fn redis_reply(r: ShardReply) -> flotilla_resp::Value {
    match r {
        ShardReply::Kv(KvReply::Redis(v)) => v,
        other => panic!("expected a Redis reply, got {other:?}"),
    }
}

/// A shard moves with its keys' types and expiry times: a hash and a string with TTLs
/// written at the old owner read the same at the new one, and expire there on time.
#[test]
fn types_and_expiry_move_with_a_shard() {
    use flotilla_resp::Value;
    let (mut a, mut b) = (ShardKv::new(1, NSHARDS), ShardKv::new(2, NSHARDS));
    let c1 = config(1, [1, 1, 1, 1]);
    for m in [&mut a, &mut b] {
        m.apply(ShardCommand::Config(c1.clone()), &ApplyCtx::zero());
    }
    let (h, s) = (
        String::from_utf8(key_in(3)).unwrap(),
        String::from_utf8(keys_in(3, 2)[1].clone()).unwrap(),
    );
    let at = |ms| ApplyCtx {
        now_ms: ms,
        index: ms,
        ..ApplyCtx::zero()
    };
    let w = |m: &mut ShardKv, seq, line: &str, ms| {
        redis_reply(m.apply(op(9, seq, redis(line)), &at(ms)))
    };
    assert_eq!(
        w(&mut a, 1, &format!("HSET {h} f v"), 1000),
        Value::Integer(1)
    );
    assert_eq!(
        w(&mut a, 2, &format!("PEXPIRE {h} 5000"), 1000),
        Value::Integer(1)
    );
    assert_eq!(
        w(&mut a, 3, &format!("SET {s} x PX 9000"), 1000),
        Value::ok()
    );
    let c2 = config(2, [1, 1, 1, 2]);
    for m in [&mut a, &mut b] {
        m.apply(ShardCommand::Config(c2.clone()), &ApplyCtx::zero());
    }
    transfer(&a, &mut b, 3, 1 << 20);
    let r = |m: &mut ShardKv, line: &str, ms| redis_reply(m.apply(op(10, 1, redis(line)), &at(ms)));
    assert_eq!(
        r(&mut b, &format!("HGET {h} f"), 2000),
        Value::Bulk(b"v".to_vec())
    );
    assert_eq!(r(&mut b, &format!("PTTL {h}"), 2000), Value::Integer(4000));
    assert_eq!(
        r(&mut b, &format!("TYPE {s}"), 2000),
        Value::simple("string")
    );
    assert_eq!(
        r(&mut b, &format!("HGET {h} f"), 6000),
        Value::Null,
        "expired on time"
    );
    assert_eq!(
        r(&mut b, &format!("GET {s}"), 6000),
        Value::Bulk(b"x".to_vec())
    );
}

/// A command on keys of two shards is refused with Redis Cluster's CROSSSLOT, unapplied.
#[test]
fn a_command_across_shards_is_refused() {
    use flotilla_resp::Value;
    let mut a = ShardKv::new(1, NSHARDS);
    a.apply(
        ShardCommand::Config(config(1, [1, 1, 1, 1])),
        &ApplyCtx::zero(),
    );
    let (k0, k1) = (
        String::from_utf8(key_in(0)).unwrap(),
        String::from_utf8(key_in(1)).unwrap(),
    );
    let reply = redis_reply(a.apply(
        op(3, 1, redis(&format!("MSET {k0} 1 {k1} 2"))),
        &ApplyCtx::zero(),
    ));
    assert_eq!(
        reply,
        Value::error("CROSSSLOT Keys in request don't hash to the same slot")
    );
    let get = redis_reply(a.apply(op(3, 2, redis(&format!("GET {k0}"))), &ApplyCtx::zero()));
    assert_eq!(get, Value::Null);
}
