//! Command-line tools that read a node's files directly, beside the journal and the stores
//! rather than inside them: they depend on both, and neither depends on them.

pub mod journal;
