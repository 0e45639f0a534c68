//! `h-sleep`: the hostile plugin whose ready strategy `h-sleep` runs [`hostile_set::sleep`].

hostile_set::plugin!("h-sleep", hostile_set::sleep);
