//! `h-trap`: the hostile plugin whose ready strategy `h-trap` runs [`hostile_set::trap`].

hostile_set::plugin!("h-trap", hostile_set::trap);
