//! Shard configurations and the rebalancer.
//!
//! A configuration assigns each of a fixed number of shards to a replica group (gid 0: to
//! none, only while there are no groups). Configurations are numbered from 0, the empty one;
//! every Join, Leave or Move that changes something makes the next one.
//!
//! The rebalancer is a pure function of the current assignment and the live groups, so every
//! controller replica computes the same result (it iterates only over ordered collections).
//! It keeps the assignment **even** (shard counts of any two groups differ by at most 1) and
//! moves the **fewest** shards that evenness allows.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A replica group's id; 0 means "no group".
pub type Gid = u64;

/// The labs' number of shards.
pub const DEFAULT_SHARDS: usize = 10;

/// One numbered configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardConfig {
    pub num: u64,
    /// The owner of each shard (index = shard).
    pub shards: Vec<Gid>,
    /// Each group's servers.
    pub groups: BTreeMap<Gid, Vec<String>>,
}

impl ShardConfig {
    /// Configuration 0: `nshards` shards, no groups.
    pub fn initial(nshards: usize) -> Self {
        ShardConfig {
            num: 0,
            shards: vec![0; nshards],
            groups: BTreeMap::new(),
        }
    }

    /// How many shards each live group holds (groups with none included).
    pub fn counts(&self) -> BTreeMap<Gid, usize> {
        let mut c: BTreeMap<Gid, usize> = self.groups.keys().map(|&g| (g, 0)).collect();
        for g in &self.shards {
            if let Some(n) = c.get_mut(g) {
                *n += 1;
            }
        }
        c
    }
}

/// The assignment after rebalancing `shards` over `groups`: every shard goes to a group in
/// `groups` (or to 0 when it is empty), counts differ by at most 1, and a shard moves only if
/// its owner left or holds more than its share.
///
/// Which groups get the one extra shard when the shards do not divide evenly: those holding
/// the most already (ties: the lower gid), which is what keeps the moves minimal. Freed shards
/// go, lowest shard first, to the groups short of their share, lowest gid first.
pub fn rebalance(shards: &[Gid], groups: &BTreeSet<Gid>) -> Vec<Gid> {
    if groups.is_empty() {
        return vec![0; shards.len()];
    }
    let mut held: BTreeMap<Gid, usize> = groups.iter().map(|&g| (g, 0)).collect();
    for g in shards {
        if let Some(n) = held.get_mut(g) {
            *n += 1;
        }
    }
    let (base, extra) = (shards.len() / groups.len(), shards.len() % groups.len());
    let mut by_holding: Vec<Gid> = groups.iter().copied().collect();
    by_holding.sort_by_key(|g| (std::cmp::Reverse(held[g]), *g));
    let target: BTreeMap<Gid, usize> = (by_holding.iter().enumerate())
        .map(|(i, &g)| (g, base + usize::from(i < extra)))
        .collect();
    // Keep each group's shards up to its target, lowest shard first; free the rest.
    let mut kept: BTreeMap<Gid, usize> = BTreeMap::new();
    let mut out: Vec<Gid> = shards
        .iter()
        .map(|&g| match target.get(&g) {
            Some(&t) if kept.get(&g).copied().unwrap_or(0) < t => {
                *kept.entry(g).or_default() += 1;
                g
            }
            _ => 0,
        })
        .collect();
    let mut short = target
        .iter()
        .flat_map(|(&g, &t)| std::iter::repeat_n(g, t - kept.get(&g).copied().unwrap_or(0)));
    for s in out.iter_mut().filter(|s| **s == 0) {
        *s = short.next().expect("targets sum to the number of shards");
    }
    out
}

/// The fewest shards any even assignment over `groups` must move away from `shards` (the
/// bound [`rebalance`] meets): those of groups not in `groups`, plus each group's excess over
/// its share when the groups holding the most keep the extra shards.
pub fn min_moves(shards: &[Gid], groups: &BTreeSet<Gid>) -> usize {
    if groups.is_empty() {
        return shards.iter().filter(|&&g| g != 0).count();
    }
    let mut held: BTreeMap<Gid, usize> = groups.iter().map(|&g| (g, 0)).collect();
    let mut orphans = 0;
    for g in shards {
        match held.get_mut(g) {
            Some(n) => *n += 1,
            None => orphans += 1,
        }
    }
    let (base, extra) = (shards.len() / groups.len(), shards.len() % groups.len());
    let mut counts: Vec<usize> = held.into_values().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let excess: usize = (counts.iter().enumerate())
        .map(|(i, &c)| c.saturating_sub(base + usize::from(i < extra)))
        .sum();
    orphans + excess
}
