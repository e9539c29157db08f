//! The user-facing API: an [`App`] is a pair of map and reduce functions (plus an optional
//! combiner), and a [`Registry`] names the apps a worker can run. Built-in apps reproduce the
//! MIT lab's plugins exactly: `wc`, `indexer` and the test apps `mtiming`, `rtiming`,
//! `jobcount`, `early_exit`, `crash` and `nocrash`.

mod lab_tests;
mod text;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use text::{count_words, words, Indexer, WordCount};

/// A MapReduce job's logic. Implement it to run your own job with this crate as a library.
///
/// ```
/// use flotilla_mr::App;
///
/// /// Counts lines per file.
/// struct LineCount;
/// impl App for LineCount {
///     fn map(&self, filename: &str, contents: &str, emit: &mut dyn FnMut(String, String)) {
///         emit(filename.to_string(), contents.lines().count().to_string());
///     }
///     fn reduce(&self, _key: &str, values: Vec<String>) -> String {
///         values.iter().map(|v| v.parse::<u64>().unwrap()).sum::<u64>().to_string()
///     }
/// }
/// let mut out = Vec::new();
/// LineCount.map("a.txt", "x\ny\n", &mut |k, v| out.push((k, v)));
/// assert_eq!(out, vec![("a.txt".to_string(), "2".to_string())]);
/// ```
pub trait App: Send + Sync + 'static {
    /// Called once per input file with its whole contents (invalid UTF-8 replaced by U+FFFD).
    fn map(&self, filename: &str, contents: &str, emit: &mut dyn FnMut(String, String));

    /// Called once per distinct key with every value emitted for it (in no particular order).
    fn reduce(&self, key: &str, values: Vec<String>) -> String;

    /// Optional combiner, run on one map task's values for a key before they leave the worker.
    /// It must not change what `reduce` finally returns. `None` (the default) means no combiner.
    fn combine(&self, _key: &str, _values: &[String]) -> Option<Vec<String>> {
        None
    }

    /// True if [`App::combine`] is implemented (lets the framework skip grouping otherwise).
    fn has_combiner(&self) -> bool {
        false
    }
}

/// Apps by name: what a worker can run when the coordinator names one.
#[derive(Clone, Default)]
pub struct Registry {
    apps: BTreeMap<String, Arc<dyn App>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every built-in app.
    pub fn builtin() -> Self {
        let mut r = Self::new();
        r.add("wc", WordCount);
        r.add("indexer", Indexer);
        lab_tests::register(&mut r);
        r
    }

    /// Adds (or replaces) an app under `name`.
    pub fn add(&mut self, name: &str, app: impl App) {
        self.apps.insert(name.to_string(), Arc::new(app));
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn App>> {
        self.apps.get(name).cloned()
    }

    pub fn names(&self) -> Vec<&str> {
        self.apps.keys().map(String::as_str).collect()
    }

    /// Looks an app up, with an error that lists the known names.
    pub fn resolve(&self, name: &str) -> Result<Arc<dyn App>, crate::MrError> {
        self.get(name).ok_or_else(|| crate::MrError::UnknownApp {
            name: name.to_string(),
            known: self.names().join(", "),
        })
    }
}
