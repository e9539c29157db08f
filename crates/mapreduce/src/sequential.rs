//! `mr sequential`: the single-process reference the lab's checks compare against. No
//! partitioning and no combiner: map every input, reduce everything, one output file.

use std::path::{Path, PathBuf};

use crate::apps::App;
use crate::compute::{reduce_to_output, KeyValue};
use crate::files::{read_input, write_atomic};
use crate::MrError;

/// Runs `app` over `inputs` (each passed to `map` under its name as given) and writes the
/// output to `out`. Returns the number of input bytes read.
pub fn run_sequential(app: &dyn App, inputs: &[PathBuf], out: &Path) -> Result<u64, MrError> {
    let mut pairs: Vec<KeyValue> = Vec::new();
    let mut bytes = 0;
    for p in inputs {
        let contents = read_input(p)?;
        bytes += contents.len() as u64;
        app.map(&p.display().to_string(), &contents, &mut |k, v| {
            pairs.push((k, v))
        });
    }
    write_atomic(out, &reduce_to_output(app, pairs))?;
    Ok(bytes)
}
