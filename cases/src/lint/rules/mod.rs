//! The rule families, one module each, in the order lint applies them.

pub mod binaries;
pub mod collisions;
pub mod content;
pub mod image;
pub mod matching;
pub mod naming;
pub mod release_dir;
pub mod release_file;
pub mod served;
pub mod store;
pub mod units;

use crate::lint::finding::Rule;

/// Every rule lint knows, for `--list-rules` and the docs.
pub fn all() -> Vec<&'static Rule> {
    let mut v = Vec::new();
    v.extend_from_slice(naming::RULES);
    v.extend_from_slice(release_file::RULES);
    v.extend_from_slice(matching::RULES);
    v.extend_from_slice(content::RULES);
    v.extend_from_slice(binaries::RULES);
    v.extend_from_slice(units::RULES);
    v.extend_from_slice(release_dir::RULES);
    v.extend_from_slice(served::RULES);
    v.extend_from_slice(store::RULES);
    v.extend_from_slice(image::RULES);
    v.extend_from_slice(collisions::RULES);
    v
}
