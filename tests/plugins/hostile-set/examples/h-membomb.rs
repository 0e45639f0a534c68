//! `h-membomb`: the hostile plugin whose ready strategy `h-membomb` runs [`hostile_set::membomb`].

hostile_set::plugin!("h-membomb", hostile_set::membomb);
