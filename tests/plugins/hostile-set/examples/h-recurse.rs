//! `h-recurse`: the hostile plugin whose ready strategy `h-recurse` runs [`hostile_set::recurse`].

hostile_set::plugin!("h-recurse", hostile_set::recurse);
