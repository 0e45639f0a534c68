//! `h-spin`: the hostile plugin whose ready strategy `h-spin` runs [`hostile_set::spin`].

hostile_set::plugin!("h-spin", hostile_set::spin);
