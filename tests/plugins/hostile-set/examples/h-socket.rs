//! `h-socket`: the hostile plugin whose ready strategy `h-socket` runs [`hostile_set::socket`].

hostile_set::plugin!("h-socket", hostile_set::socket);
