//! `flotilla ctl`: operating a running cluster. Each subcommand lives in its own module;
//! they share `group` (which replicas, which credentials) and nothing else.

use clap::Subcommand;

mod group;
mod members;
mod shards;
mod status;

use group::ClusterArgs;

#[derive(Subcommand)]
pub enum CtlCommand {
    /// Every replica's role, term, indexes, storage sizes and place in the membership, in a
    /// table, then the group's membership. Members not among --servers are found and shown.
    /// For a sharded `flotilla up` directory: each group's shards and every server's view of
    /// them (as `ctl shards`).
    Status {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Print JSON (one object per replica, `null` if unreachable) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a replica started with `flotilla server --join`: as a learner, then, once it has
    /// caught up with the log, as a voter (unless --learner).
    AddNode(members::AddNodeArgs),
    /// Promote a learner to voter, once it has caught up.
    Promote(members::NodeArgs),
    /// Remove a replica (voter or learner) from the group. If it leads, leadership is handed
    /// to another voter first. Stop its process afterwards.
    RemoveNode(members::NodeArgs),
    /// Hand leadership to another voter, and wait until it leads.
    TransferLeader(members::NodeArgs),
    #[command(flatten)]
    Shards(shards::ShardCommand),
}

pub fn ctl(cmd: CtlCommand) -> Result<(), String> {
    match cmd {
        CtlCommand::Status { cluster, json } => status::run(cluster, json),
        CtlCommand::AddNode(a) => members::add_node(a),
        CtlCommand::Promote(a) => members::promote(a),
        CtlCommand::RemoveNode(a) => members::remove_node(a),
        CtlCommand::TransferLeader(a) => members::transfer_leader(a),
        CtlCommand::Shards(c) => shards::run(c),
    }
}
