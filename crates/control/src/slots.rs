//! The connection slots of the HTTP listener on TCP, kept for clients with the token.
//!
//! A connection is unauthenticated until one of its requests carries the right token; then it is
//! authenticated for good. When every slot is taken, or when an address holds its share of
//! unauthenticated slots, a new connection takes the slot of the oldest unauthenticated one (of that
//! address first), which is closed. An authenticated connection is never closed for another, so
//! idle or slow sockets of anyone without the token cannot lock the token holder out; only when every
//! slot is authenticated are new connections answered 503.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// What to do with a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve it, after closing these connections (by id).
    Admit(Vec<u64>),
    /// Every slot is authenticated: answer busy.
    Full,
}

#[derive(Debug)]
struct Entry {
    ip: IpAddr,
    authenticated: bool,
    close: Arc<Notify>,
}

/// The open connections, oldest first (ids grow).
#[derive(Debug)]
struct Table {
    max: usize,
    per_address: usize,
    next: u64,
    open: BTreeMap<u64, Entry>,
}

impl Table {
    /// Decides about a new connection from `ip`.
    fn decide(&self, ip: IpAddr) -> Decision {
        let unauthenticated = |e: &&Entry| !e.authenticated;
        let mut evict = Vec::new();
        let same: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, e)| e.ip == ip && unauthenticated(e))
            .map(|(id, _)| *id)
            .collect();
        if same.len() >= self.per_address {
            evict.push(same[0]);
        }
        if self.open.len() - evict.len() >= self.max {
            match self
                .open
                .iter()
                .find(|(id, e)| unauthenticated(e) && !evict.contains(id))
            {
                Some((id, _)) => evict.push(*id),
                None => return Decision::Full,
            }
        }
        Decision::Admit(evict)
    }
}

/// The slots of one listener.
#[derive(Debug)]
pub struct Slots {
    table: Mutex<Table>,
}

/// One connection's slot, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    close: Arc<Notify>,
}

impl Slots {
    /// `max` slots, of which one address may hold `per_address` unauthenticated.
    pub fn new(max: usize, per_address: usize) -> Arc<Slots> {
        Arc::new(Slots {
            table: Mutex::new(Table {
                max: max.max(1),
                per_address: per_address.max(1),
                next: 0,
                open: BTreeMap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns a slot for a new connection from `ip`, closing those it displaces; `None` when every
    /// slot is authenticated.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut table = self.lock();
        let Decision::Admit(evict) = table.decide(ip) else {
            return None;
        };
        for id in evict {
            if let Some(e) = table.open.remove(&id) {
                e.close.notify_one();
            }
        }
        let id = table.next;
        table.next += 1;
        let close = Arc::new(Notify::new());
        table.open.insert(
            id,
            Entry {
                ip,
                authenticated: false,
                close: close.clone(),
            },
        );
        Some(Slot {
            slots: self.clone(),
            id,
            close,
        })
    }
}

impl Slot {
    /// Marks the connection authenticated: it keeps its slot.
    pub fn authenticate(&self) {
        if let Some(e) = self.slots.lock().open.get_mut(&self.id) {
            e.authenticated = true;
        }
    }

    /// Waits until another connection took this one's slot.
    pub async fn displaced(&self) {
        self.close.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().open.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn a_new_connection_displaces_the_oldest_unauthenticated_one_never_an_authenticated_one() {
        let slots = Slots::new(3, 3);
        let a = slots.admit(ip(1)).unwrap();
        let b = slots.admit(ip(2)).unwrap();
        let c = slots.admit(ip(3)).unwrap();
        a.authenticate();
        assert_eq!(slots.lock().decide(ip(4)), Decision::Admit(vec![b.id]));
        let d = slots.admit(ip(4)).unwrap();
        assert_eq!(slots.lock().decide(ip(5)), Decision::Admit(vec![c.id]));
        c.authenticate(); // too late: c was not displaced yet, so it keeps its slot
        d.authenticate();
        assert_eq!(slots.lock().decide(ip(5)), Decision::Full);
        assert!(slots.admit(ip(5)).is_none());
        drop(a);
        assert_eq!(slots.lock().decide(ip(5)), Decision::Admit(vec![]));
    }

    #[test]
    fn an_address_holds_its_share_of_unauthenticated_slots_at_most() {
        let slots = Slots::new(10, 2);
        let first = slots.admit(ip(1)).unwrap();
        let second = slots.admit(ip(1)).unwrap();
        let other = slots.admit(ip(2)).unwrap();
        assert_eq!(slots.lock().decide(ip(1)), Decision::Admit(vec![first.id]));
        second.authenticate();
        assert_eq!(slots.lock().decide(ip(1)), Decision::Admit(vec![]));
        assert_eq!(slots.lock().decide(ip(2)), Decision::Admit(vec![]));
        drop(other);
    }

    #[tokio::test]
    async fn a_displaced_connection_hears_of_it() {
        let slots = Slots::new(1, 1);
        let old = slots.admit(ip(1)).unwrap();
        let _new = slots.admit(ip(1)).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), old.displaced())
            .await
            .expect("told to close");
    }
}
