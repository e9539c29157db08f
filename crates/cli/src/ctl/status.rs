//! `flotilla ctl status`: every replica's role, term, indexes and storage, in a table or as
//! JSON, then the group's membership; for a sharded `flotilla up`, the shards by group.

use std::time::Duration;

use flotilla_client::admin::{survey, ClusterView};
use flotilla_kv::KvMsg;
use flotilla_raft::NodeId;
use flotilla_transport::NodeStatus;

use super::group::{describe, Cluster, ClusterArgs};
use super::shards::{self, CtrlArgs, ShardCommand};
use crate::layout::Layout;
use crate::process::runtime;

/// How long `ctl status` waits for each replica.
const STATUS_WAIT: Duration = Duration::from_secs(2);

/// `ctl status`: the statuses of `cluster`'s replicas, as a table or JSON; for a sharded
/// `flotilla up` directory (no --servers), its shards as `ctl shards` shows them.
pub fn run(cluster: ClusterArgs, json: bool) -> Result<(), String> {
    let sharded = Layout::read(&cluster.dir).is_ok_and(|l| l.sharded.is_some());
    if cluster.servers.is_empty() && sharded {
        // A sharded `flotilla up`: the configuration's shards by group, then every
        // server (controller and groups) with the shards it holds and their states.
        let ctrl = CtrlArgs {
            ctrlers: Vec::new(),
            dir: cluster.dir,
            timeout: STATUS_WAIT * 5,
            secret: cluster.secret,
            tls: cluster.tls,
        };
        return shards::run(ShardCommand::Shards { json, ctrl });
    }
    let c = cluster.load()?;
    let rows = runtime()?.block_on(status_rows(&c));
    if json {
        let v: Vec<Option<&NodeStatus>> = rows.iter().map(|(_, r)| r.as_ref().ok()).collect();
        println!("{}", serde_json::to_string(&v).expect("statuses serialise"));
    } else {
        print!("{}", status_table(&rows));
        print!("{}", membership_summary(&rows));
    }
    Ok(())
}

/// One row per replica asked: its address, and its status or why there is none.
type StatusRows = Vec<(String, Result<NodeStatus, String>)>;

/// The statuses of the seeds, then of every member they name that was not among them.
async fn status_rows(c: &Cluster) -> StatusRows {
    let mut rows: StatusRows = Vec::new();
    let mut ask = c.seeds.clone();
    // Each round asks the members the previous one revealed; a few rounds find them all.
    for _ in 0..4 {
        if ask.is_empty() {
            break;
        }
        let answers = survey::<KvMsg>(&ask, &c.secret, c.tls.clone(), STATUS_WAIT).await;
        rows.extend((ask.into_iter().zip(answers)).map(|(a, r)| (a, r.map_err(|e| e.to_string()))));
        let Some(view) = ClusterView::of(&answered(&rows)) else {
            break;
        };
        // Members not heard from yet, by id (an address may be spelt two ways) or address.
        let heard = |id: u64, addr: &String| {
            (rows.iter())
                .any(|(a, r)| a == addr || r.as_ref().is_ok_and(|s| s.id == NodeId::new(id)))
        };
        ask = (view.addrs.into_iter())
            .filter(|(id, a)| !heard((*id).get(), a))
            .map(|(_, a)| a)
            .collect();
    }
    rows
}

/// The rows that answered, with their addresses.
fn answered(rows: &StatusRows) -> Vec<(String, NodeStatus)> {
    (rows.iter())
        .filter_map(|(a, r)| r.as_ref().ok().map(|s| (a.clone(), s.clone())))
        .collect()
}

fn status_table(rows: &StatusRows) -> String {
    let mut out = format!(
        "{:>3}  {:<21} {:>7} {:<9} {:<7} {:>5} {:>6} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}  {}\n",
        "id",
        "address",
        "pid",
        "role",
        "member",
        "term",
        "leader",
        "commit",
        "applied",
        "last",
        "snap",
        "log bytes",
        "snap bytes",
        "metrics"
    );
    let view = ClusterView::of(&answered(rows)).unwrap_or_default();
    for (i, (addr, row)) in rows.iter().enumerate() {
        match row {
            Ok(s) => out.push_str(&format!(
                "{:>3}  {:<21} {:>7} {:<9} {:<7} {:>5} {:>6} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}  {}\n",
                s.id,
                addr,
                s.pid,
                s.role,
                s.member,
                s.term,
                s.leader.map_or("-".to_owned(), |l| l.to_string()),
                s.commit_index,
                s.applied_index,
                s.last_log_index,
                s.snapshot_index,
                s.state_bytes,
                s.snapshot_bytes,
                s.metrics.as_deref().map_or("-".to_owned(), |m| format!("http://{m}/metrics"))
            )),
            Err(e) => {
                // A silent replica's id: the one the membership gives its address, else its
                // position (--servers are the founding replicas in id order).
                let id = (view.addrs.iter().find(|(_, a)| *a == addr))
                    .map_or(NodeId::from_index(i), |(&id, _)| id);
                out.push_str(&format!("{id:>3}  {addr:<21} unreachable: {e}\n"));
            }
        }
    }
    out
}

/// The group's membership in words, and any replica that sees another one.
fn membership_summary(rows: &StatusRows) -> String {
    let heard = answered(rows);
    let Some(view) = ClusterView::of(&heard) else {
        return "membership: unknown (no replica answered)\n".to_owned();
    };
    let source = match view.leader {
        Some(l) => format!("as the leader, node {l}, sees it"),
        None => "no leader now; the newest any replica holds".to_owned(),
    };
    let mut out = format!(
        "\nmembership (log index {}, {}; {source}):\n  voters:   {}\n  learners: {}\n",
        view.membership_index,
        if view.committed {
            "committed"
        } else {
            "not yet committed"
        },
        describe(&view.voters, &view.addrs),
        describe(&view.learners, &view.addrs),
    );
    for (_, s) in &heard {
        if s.membership_index != view.membership_index {
            out.push_str(&format!(
                "  node {} ({}) uses another membership (log index {}): voters {:?}, learners {:?}\n",
                s.id, s.member, s.membership_index, s.voters, s.learners
            ));
        }
    }
    out
}
