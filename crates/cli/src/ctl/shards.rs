//! `flotilla ctl join / leave / move / query / shards`: the shard controller of a sharded
//! deployment, and what each group holds.
//!
//! Join, Leave and Move go to the controller, which answers once the new configuration is
//! committed; the groups then move the shards themselves. With `--wait` the command also
//! waits until every group concerned has reached that configuration and holds exactly its
//! shards (none still arriving, none still being handed off), which `ctl shards` shows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use flotilla_client::admin::survey;
use flotilla_client::ShardClient;
use flotilla_shardctrler::{CtrlCommand, CtrlReply, Gid, ShardConfig, DEFAULT_SHARDS};
use flotilla_shardkv::ShardMsg;
use flotilla_transport::NodeStatus;

use crate::auth::{SecretArgs, TlsArgs};
use crate::layout::Layout;
use crate::process::runtime;
use crate::units::parse_duration;
use crate::words;

/// How long one server may take to answer a status request.
const STATUS_WAIT: Duration = Duration::from_secs(1);

/// Where the controller is, and how long to wait for it.
#[derive(Args, Clone)]
pub struct CtrlArgs {
    /// The shard controller's replicas, comma-separated. Default: read from --dir's
    /// cluster.json (a sharded `flotilla up`).
    #[arg(long, value_delimiter = ',')]
    pub ctrlers: Vec<String>,
    /// A `flotilla up` data directory: controller addresses and secret are read from it.
    #[arg(long, default_value = "flotilla-data")]
    pub dir: PathBuf,
    /// Give up (exit non-zero) if not done within this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub secret: SecretArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Subcommand)]
pub enum ShardCommand {
    /// Add shard group GID, whose replicas (started with `flotilla server --role shard --gid
    /// GID`) listen at SERVERS; the shards are rebalanced over all groups.
    Join {
        gid: Gid,
        /// The group's replicas' addresses, comma-separated, in --id order.
        #[arg(value_delimiter = ',', required = true)]
        servers: Vec<String>,
        /// Wait until the shards have moved.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        ctrl: CtrlArgs,
    },
    /// Remove groups; their shards go to the others. The last group cannot leave (its data
    /// would have nowhere to go). Stop a group's processes only once it holds no shard
    /// (`ctl shards`, or --wait).
    Leave {
        #[arg(required = true)]
        gids: Vec<Gid>,
        /// Wait until the shards have moved.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        ctrl: CtrlArgs,
    },
    /// Give shard SHARD to group GID (no rebalancing; a later join or leave may move it).
    Move {
        shard: usize,
        gid: Gid,
        /// Wait until the shard has moved.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        ctrl: CtrlArgs,
    },
    /// Print configuration NUM (default: the latest).
    Query {
        num: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ctrl: CtrlArgs,
    },
    /// The latest configuration's shards by group, and each server's own view: the
    /// configuration it has reached and the state of every shard it holds.
    Shards {
        /// Print JSON: {"config": …, "servers": [{"addr", "gid", "status"}]}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ctrl: CtrlArgs,
    },
}

impl CtrlArgs {
    fn load(&self) -> Result<Connected, String> {
        let (ctrlers, nshards, secret) = if self.ctrlers.is_empty() {
            let layout = Layout::read(&self.dir)?;
            let Some(sharded) = layout.sharded.clone() else {
                return Err(format!(
                    "the cluster in {} is a single group, not sharded; give --ctrlers",
                    self.dir.display()
                ));
            };
            let secret = match self.secret.secret_file {
                Some(_) => self.secret.load()?,
                None => SecretArgs {
                    secret_file: Some(layout.secret_file(&self.dir)),
                }
                .load()?,
            };
            (sharded.ctrlers, sharded.shards, secret)
        } else {
            (self.ctrlers.clone(), DEFAULT_SHARDS, self.secret.load()?)
        };
        Ok(Connected {
            ctrlers,
            nshards,
            secret,
            tls: self.tls.load()?,
            timeout: self.timeout,
        })
    }
}

struct Connected {
    ctrlers: Vec<String>,
    nshards: usize,
    secret: flotilla_transport::Secret,
    tls: Option<std::sync::Arc<flotilla_transport::tls::PeerTls>>,
    timeout: Duration,
}

impl Connected {
    fn clients(&self) -> Result<std::sync::Arc<ShardClient>, String> {
        ShardClient::connect(
            &self.ctrlers,
            self.nshards,
            self.secret.clone(),
            self.tls.clone(),
        )
        .map_err(words::controller)
    }
}

pub fn run(cmd: ShardCommand) -> Result<(), String> {
    runtime()?.block_on(async move {
        match cmd {
            ShardCommand::Join {
                gid,
                servers,
                wait,
                ctrl,
            } => {
                let c = ctrl.load()?;
                let groups = BTreeMap::from([(gid, servers)]);
                change(&c, CtrlCommand::Join(groups), wait).await
            }
            ShardCommand::Leave { gids, wait, ctrl } => {
                let c = ctrl.load()?;
                change(&c, CtrlCommand::Leave(gids), wait).await
            }
            ShardCommand::Move {
                shard,
                gid,
                wait,
                ctrl,
            } => {
                let c = ctrl.load()?;
                change(&c, CtrlCommand::Move { shard, gid }, wait).await
            }
            ShardCommand::Query { num, json, ctrl } => {
                let c = ctrl.load()?;
                let config = (c.clients()?.query(num, c.timeout).await).map_err(words::controller)?;
                if json {
                    println!("{}", serde_json::to_string(&config).expect("a configuration"));
                } else {
                    print!("{}", describe(&config));
                }
                Ok(())
            }
            ShardCommand::Shards { json, ctrl } => {
                let c = ctrl.load()?;
                let config = (c.clients()?.query(None, c.timeout).await).map_err(words::controller)?;
                let servers = servers_of(&c, &config).await;
                if json {
                    let rows: Vec<serde_json::Value> = (servers.iter())
                        .map(|(addr, gid, st)| {
                            serde_json::json!({"addr": addr, "gid": gid, "status": st.as_ref().ok()})
                        })
                        .collect();
                    let v = serde_json::json!({"config": config, "servers": rows});
                    println!("{v}");
                } else {
                    print!("{}", describe(&config));
                    print!("{}", server_table(&servers));
                }
                Ok(())
            }
        }
    })
}

/// Refuses changes that cannot be right before asking the controller (which would refuse
/// most of them too, but not a Leave of every group: that configuration is legal for the
/// controller, but the groups would refuse to apply it, their shards having nowhere to go).
fn check_change(cmd: &CtrlCommand, latest: &ShardConfig) -> Result<(), String> {
    if let CtrlCommand::Leave(gids) = cmd {
        let leaving: BTreeSet<Gid> = gids.iter().copied().collect();
        if let Some(g) = leaving.iter().find(|g| !latest.groups.contains_key(g)) {
            return Err(format!(
                "group {g} is not in the latest configuration ({})",
                latest.num
            ));
        }
        if latest.groups.keys().all(|g| leaving.contains(g)) {
            return Err(format!(
                "refusing to remove the last group{} ({}): {} shards would have nowhere to \
                 go; join another group first",
                if leaving.len() > 1 { "s" } else { "" },
                gids.iter()
                    .map(|g| g.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                if leaving.len() > 1 { "their" } else { "its" },
            ));
        }
    }
    if let CtrlCommand::Join(groups) = cmd {
        for (g, servers) in groups {
            let taken: Vec<&String> = (latest.groups.iter())
                .filter(|(other, _)| *other != g)
                .flat_map(|(_, s)| s)
                .filter(|s| servers.contains(s))
                .collect();
            if let Some(a) = taken.first() {
                return Err(format!("{a} already serves another group"));
            }
        }
    }
    Ok(())
}

async fn change(c: &Connected, cmd: CtrlCommand, wait: bool) -> Result<(), String> {
    let started = Instant::now();
    let clients = c.clients()?;
    let before = (clients.query(None, c.timeout).await).map_err(words::controller)?;
    check_change(&cmd, &before)?;
    let num = match clients
        .ctrl(cmd, c.timeout)
        .await
        .map_err(words::controller)?
    {
        CtrlReply::Done { num } => num,
        CtrlReply::Err(e) => return Err(format!("the controller refused: {e}")),
        other => return Err(format!("unexpected answer from the controller: {other:?}")),
    };
    let after = (clients.query(Some(num), c.timeout).await).map_err(words::controller)?;
    if num == before.num {
        println!("nothing changed: the latest configuration already says so");
    }
    print!("{}", describe(&after));
    if !wait {
        return Ok(());
    }
    // Every group that holds or held shards in the change must get there.
    let mut groups: BTreeSet<Gid> = before.groups.keys().copied().collect();
    groups.extend(after.groups.keys().copied());
    let deadline = started + c.timeout;
    loop {
        let servers = servers_of_groups(c, &before, &after).await;
        let pending = unsettled(&after, &groups, &servers);
        if pending.is_empty() {
            println!(
                "settled: every group serves configuration {num}'s shards ({:.2} s)",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not settled within {:?}: {}",
                c.timeout,
                pending.join("; ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What still keeps `groups` from being settled at `config`, in words (empty: settled): each
/// group's leader must have reached it, and hold exactly the shards it gives the group, all
/// served (none arriving, none handed off but not yet deleted).
fn unsettled(
    config: &ShardConfig,
    groups: &BTreeSet<Gid>,
    servers: &[(String, Gid, Result<NodeStatus, String>)],
) -> Vec<String> {
    let mut out = Vec::new();
    for &g in groups {
        let leader = (servers.iter())
            .filter(|(_, gid, _)| *gid == g)
            .filter_map(|(_, _, s)| s.as_ref().ok())
            .filter(|s| s.role == "leader")
            .max_by_key(|s| s.term);
        let Some(view) = leader.and_then(|s| s.shard.as_deref()) else {
            out.push(format!("group {g}: no leader answered"));
            continue;
        };
        if view.config_num < config.num {
            out.push(format!("group {g} at configuration {}", view.config_num));
            continue;
        }
        let owned: BTreeSet<usize> = (0..config.shards.len())
            .filter(|&s| config.shards[s] == g)
            .collect();
        let held: BTreeSet<usize> = view.states.keys().copied().collect();
        let moving: Vec<String> = (view.states.iter())
            .filter(|(_, st)| *st != "Serving")
            .map(|(s, st)| format!("{s} {st}"))
            .collect();
        if !moving.is_empty() || owned != held {
            out.push(format!("group {g}: shards {}", moving.join(", ")));
        }
    }
    out
}

/// Each server of the latest configuration's groups with its status, by group.
async fn servers_of(
    c: &Connected,
    config: &ShardConfig,
) -> Vec<(String, Gid, Result<NodeStatus, String>)> {
    servers_of_groups(c, config, config).await
}

/// The controller's replicas (group 0) and the servers of `a`'s and `b`'s groups.
async fn servers_of_groups(
    c: &Connected,
    a: &ShardConfig,
    b: &ShardConfig,
) -> Vec<(String, Gid, Result<NodeStatus, String>)> {
    let mut who: Vec<(String, Gid)> = c.ctrlers.iter().map(|a| (a.clone(), 0)).collect();
    for config in [a, b] {
        for (&g, servers) in &config.groups {
            for s in servers {
                if !who.iter().any(|(a, gid)| a == s && *gid == g) {
                    who.push((s.clone(), g));
                }
            }
        }
    }
    let addrs: Vec<String> = who.iter().map(|(a, _)| a.clone()).collect();
    let answers = survey::<ShardMsg>(&addrs, &c.secret, c.tls.clone(), STATUS_WAIT).await;
    (who.into_iter().zip(answers))
        .map(|((a, g), r)| (a, g, r.map_err(|e| e.to_string())))
        .collect()
}

/// A configuration in words: each group's servers and shards.
pub fn describe(config: &ShardConfig) -> String {
    let mut out = format!(
        "configuration {} ({} shards)\n",
        config.num,
        config.shards.len()
    );
    if config.groups.is_empty() {
        out.push_str("  no groups: no shard is served (`flotilla ctl join GID ADDR,…`)\n");
    }
    for (g, servers) in &config.groups {
        let shards: Vec<String> = (0..config.shards.len())
            .filter(|&s| config.shards[s] == *g)
            .map(|s| s.to_string())
            .collect();
        out.push_str(&format!(
            "  group {g:<4} shards [{}]  servers {}\n",
            shards.join(" "),
            servers.join(",")
        ));
    }
    out
}

fn server_table(servers: &[(String, Gid, Result<NodeStatus, String>)]) -> String {
    let mut out = format!(
        "\n{:<6} {:<21} {:>7} {:<9} {:>5} {:>7} {:>7}  {}\n",
        "group", "address", "pid", "role", "term", "applied", "config", "shards (state:keys)"
    );
    for (addr, g, row) in servers {
        let group = if *g == 0 {
            "ctrl".to_owned()
        } else {
            g.to_string()
        };
        match row {
            Ok(s) => {
                let view = s.shard.clone().unwrap_or_default();
                let shards: Vec<String> = (view.states.iter())
                    .map(|(sh, st)| {
                        let keys = view.keys.get(sh).copied().unwrap_or(0);
                        format!("{sh}:{st}:{keys}")
                    })
                    .collect();
                out.push_str(&format!(
                    "{group:<6} {addr:<21} {:>7} {:<9} {:>5} {:>7} {:>7}  {}\n",
                    s.pid,
                    s.role,
                    s.term,
                    s.applied_index,
                    view.config_num,
                    if view.kind == "ctrler" {
                        "(controller: latest configuration)".to_owned()
                    } else {
                        shards.join(" ")
                    }
                ));
            }
            Err(e) => out.push_str(&format!("{group:<6} {addr:<21} unreachable: {e}\n")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(groups: &[Gid]) -> ShardConfig {
        ShardConfig {
            num: 3,
            shards: (0..10).map(|s| groups[s % groups.len()]).collect(),
            groups: groups
                .iter()
                .map(|&g| (g, vec![format!("h:{g}")]))
                .collect(),
        }
    }

    #[test]
    fn the_last_group_cannot_leave_and_unknown_groups_are_named() {
        let two = config(&[1, 2]);
        assert!(check_change(&CtrlCommand::Leave(vec![1]), &two).is_ok());
        let e = check_change(&CtrlCommand::Leave(vec![1, 2]), &two).unwrap_err();
        assert!(e.contains("last groups"), "{e}");
        let e = check_change(&CtrlCommand::Leave(vec![1]), &config(&[1])).unwrap_err();
        assert!(e.contains("last group (1)"), "{e}");
        let e = check_change(&CtrlCommand::Leave(vec![7]), &two).unwrap_err();
        assert!(e.contains("group 7 is not"), "{e}");
        let join = CtrlCommand::Join(BTreeMap::from([(3, vec!["h:2".to_owned()])]));
        assert!(check_change(&join, &two).unwrap_err().contains("h:2"));
    }
}
