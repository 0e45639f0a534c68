//! `h-escape`: the hostile plugin whose ready strategy `h-escape` runs [`hostile_set::escape`].

hostile_set::plugin!("h-escape", hostile_set::escape);
