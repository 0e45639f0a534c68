//! `h-huge`: the hostile plugin whose ready strategy `h-huge` runs [`hostile_set::huge`].

hostile_set::plugin!("h-huge", hostile_set::huge);
