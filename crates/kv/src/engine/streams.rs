//! Streams.

#[allow(unused_imports)]
use super::{Handler, Run};

pub(super) const HANDLERS: &[(&str, Handler)] = &[];
