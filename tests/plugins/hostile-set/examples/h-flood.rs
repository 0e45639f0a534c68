//! `h-flood`: the hostile plugin whose ready strategy `h-flood` runs [`hostile_set::flood`].

hostile_set::plugin!("h-flood", hostile_set::flood);
