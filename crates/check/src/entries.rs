//! The search's data structures: the time-ordered list of call/return entries (an index-based
//! doubly linked list, so that lifting an operation out and putting it back are O(1)) and the
//! set of linearized operations.

/// "No node": the end of the list.
const NIL: usize = usize::MAX;

/// The head sentinel's index.
pub(crate) const HEAD: usize = 0;

/// One call or return entry.
#[derive(Debug, Clone)]
struct Node {
    prev: usize,
    next: usize,
    /// The operation's index in the partition.
    op: usize,
    /// For a call: its return's node. `NIL` marks a return node.
    ret: usize,
}

/// Where an entry sits in time. Calls sort before returns at the same instant because intervals
/// are closed (operations that touch are concurrent); unknown returns sort after everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum At {
    Time(u64, bool),
    Never,
}

/// Call and return entries of a partition's operations, sorted by time, as a linked list.
#[derive(Debug)]
pub(crate) struct Entries {
    nodes: Vec<Node>,
}

impl Entries {
    /// Builds the list from `(call, ret)` per operation; `ret == None` means +infinity.
    pub(crate) fn new(times: &[(u64, Option<u64>)]) -> Self {
        let mut order: Vec<(At, usize)> = Vec::with_capacity(2 * times.len());
        for (op, &(call, ret)) in times.iter().enumerate() {
            order.push((At::Time(call, false), op));
            order.push((ret.map_or(At::Never, |t| At::Time(t, true)), op));
        }
        // Stable, so simultaneous entries keep operation order: deterministic, like porcupine.
        order.sort_by_key(|&(at, _)| at);
        let mut nodes = Vec::with_capacity(order.len() + 1);
        nodes.push(Node {
            prev: NIL,
            next: NIL,
            op: usize::MAX,
            ret: NIL,
        });
        let mut call_node = vec![NIL; times.len()];
        let mut ret_node = vec![NIL; times.len()];
        for (i, &(at, op)) in order.iter().enumerate() {
            let index = i + 1;
            match at {
                At::Time(_, false) => call_node[op] = index,
                At::Time(_, true) | At::Never => ret_node[op] = index,
            }
            nodes.push(Node {
                prev: index - 1,
                next: NIL,
                op,
                ret: NIL,
            });
            nodes[index - 1].next = index;
        }
        for (call, ret) in call_node.into_iter().zip(ret_node) {
            nodes[call].ret = ret;
        }
        Entries { nodes }
    }

    /// The first entry after the head, or `None` when every operation is linearized.
    pub(crate) fn first(&self) -> Option<usize> {
        let next = self.nodes[HEAD].next;
        (next != NIL).then_some(next)
    }

    /// The entry after `node`. Only called on call entries, which always have their return after them.
    pub(crate) fn next(&self, node: usize) -> usize {
        self.nodes[node].next
    }

    /// The operation of entry `node`.
    pub(crate) fn op(&self, node: usize) -> usize {
        self.nodes[node].op
    }

    /// Whether entry `node` is a call (rather than a return).
    pub(crate) fn is_call(&self, node: usize) -> bool {
        self.nodes[node].ret != NIL
    }

    /// Takes call entry `call` and its return out of the list (the operation is linearized).
    pub(crate) fn lift(&mut self, call: usize) {
        let ret = self.nodes[call].ret;
        self.unlink(call);
        self.unlink(ret);
    }

    /// Puts back what [`Entries::lift`] took out; must undo lifts in reverse order.
    pub(crate) fn unlift(&mut self, call: usize) {
        let ret = self.nodes[call].ret;
        self.relink(ret);
        self.relink(call);
    }

    fn unlink(&mut self, node: usize) {
        let Node { prev, next, .. } = self.nodes[node];
        self.nodes[prev].next = next;
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }

    /// Valid because the neighbours `node` remembers are exactly those it had when unlinked.
    fn relink(&mut self, node: usize) {
        let Node { prev, next, .. } = self.nodes[node];
        self.nodes[prev].next = node;
        if next != NIL {
            self.nodes[next].prev = node;
        }
    }
}

/// The set of linearized operations, numbered in call order.
///
/// The search linearizes operations roughly in call order, so the set is nearly always a run
/// of all-ones words, a few mixed words, then zeros. The memo stores only the mixed middle
/// ([`Bitset::key`]), and the hash is kept up to date bit by bit (Zobrist hashing), so neither
/// hashing nor storing a set costs time or memory in proportion to the history's length.
#[derive(Debug, Clone)]
pub(crate) struct Bitset {
    words: Box<[u64]>,
    /// Exactly the number of leading words that are all ones.
    full: usize,
    /// No word at or past this index has a bit set (an upper bound, tightened by `key`).
    end: usize,
    /// XOR of [`bit_hash`] over the set bits.
    hash: u64,
}

/// A set as the memo stores it: the words between the leading all-ones words and the
/// trailing zero words. Canonical, so equal sets have equal keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetKey {
    full: usize,
    middle: Box<[u64]>,
}

impl SetKey {
    /// Bytes it holds, for the memo's budget.
    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of::<SetKey>() + self.middle.len() * 8
    }
}

/// A fixed pseudo-random value per bit (SplitMix64's finalizer).
fn bit_hash(bit: usize) -> u64 {
    let mut z = (bit as u64)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Bitset {
    pub(crate) fn new(bits: usize) -> Self {
        let words = vec![0; bits.div_ceil(64)].into_boxed_slice();
        Bitset {
            words,
            full: 0,
            end: 0,
            hash: 0,
        }
    }

    pub(crate) fn set(&mut self, bit: usize) {
        let word = bit / 64;
        self.words[word] |= 1 << (bit % 64);
        self.hash ^= bit_hash(bit);
        self.end = self.end.max(word + 1);
        while self.full < self.words.len() && self.words[self.full] == u64::MAX {
            self.full += 1;
        }
    }

    pub(crate) fn clear(&mut self, bit: usize) {
        let word = bit / 64;
        self.words[word] &= !(1 << (bit % 64));
        self.hash ^= bit_hash(bit);
        self.full = self.full.min(word);
    }

    /// A hash of the set, equal for equal sets.
    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    /// The mixed middle of the set: what the memo stores and compares.
    pub(crate) fn middle(&mut self) -> &[u64] {
        while self.end > self.full && self.words[self.end - 1] == 0 {
            self.end -= 1;
        }
        &self.words[self.full..self.end.max(self.full)]
    }

    /// Whether `key` is this set.
    pub(crate) fn matches(&mut self, key: &SetKey) -> bool {
        key.full == self.full && *key.middle == *self.middle()
    }

    /// The set as the memo stores it.
    pub(crate) fn key(&mut self) -> SetKey {
        SetKey {
            full: self.full,
            middle: self.middle().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(entries: &Entries) -> Vec<(usize, bool)> {
        let mut out = Vec::new();
        let mut node = entries.first();
        while let Some(n) = node {
            out.push((entries.op(n), entries.is_call(n)));
            let next = entries.next(n);
            node = (next != NIL).then_some(next);
        }
        out
    }

    #[test]
    fn entries_sort_calls_before_returns_and_unknown_last() {
        // op 0: [5, 10], op 1: [10, 20], op 2: [0, unknown]
        let entries = Entries::new(&[(5, Some(10)), (10, Some(20)), (0, None)]);
        let expected = [
            (2, true),
            (0, true),
            (1, true),
            (0, false),
            (1, false),
            (2, false),
        ];
        assert_eq!(walk(&entries), expected);
    }

    #[test]
    fn lift_and_unlift_restore_the_list() {
        let mut entries = Entries::new(&[(0, Some(3)), (1, Some(2)), (4, Some(5))]);
        let before = walk(&entries);
        let first = entries.first().unwrap();
        entries.lift(first);
        assert_eq!(
            walk(&entries),
            [(1, true), (1, false), (2, true), (2, false)]
        );
        let second = entries.first().unwrap();
        entries.lift(second);
        entries.unlift(second);
        entries.unlift(first);
        assert_eq!(walk(&entries), before);
    }

    #[test]
    fn bitset_keys_are_canonical_and_hashes_follow_the_set() {
        let mut a = Bitset::new(200);
        let empty = a.key();
        for bit in 0..70 {
            a.set(bit);
        }
        a.set(150);
        let key = a.key();
        assert_eq!(
            key,
            SetKey {
                full: 1,
                middle: vec![0x3f, 1 << 22].into()
            }
        );
        let hash = a.hash();
        a.clear(3);
        assert_ne!(a.hash(), hash);
        assert!(!a.matches(&key));
        a.set(3);
        assert_eq!((a.hash(), a.matches(&key)), (hash, true));
        for bit in (0..70).chain([150]) {
            a.clear(bit);
        }
        assert_eq!((a.hash(), a.key()), (0, empty));
    }
}
