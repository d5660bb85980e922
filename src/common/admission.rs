//! A table of accepted connections with a per-address cap and a total cap:
//! the bookkeeping the catalog's and the HTTP connection rules share. Which
//! connection to evict is the caller's choice (its `Held::eviction_key`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::net::ConnId;

/// What to do with a connection just accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Accept,
    /// Accept it and close this one to make room.
    Evict(ConnId),
    /// Close it: its address holds its cap of connections already.
    Refuse,
}

/// What a table entry tells the table.
pub trait Held {
    type Key: Ord;
    fn ip(&self) -> IpAddr;
    /// The smallest key is evicted first.
    fn eviction_key(&self) -> Self::Key;
}

/// Connections by id (ordered, so every run evicts and expires alike) and
/// how many each address holds.
pub struct Table<E> {
    entries: BTreeMap<ConnId, E>,
    per_ip: BTreeMap<IpAddr, usize>,
    max_conns: usize,
    max_per_ip: usize,
}

/// Whether a table has room for one more connection from an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    Free,
    /// The table is full: evict one to make room.
    Full,
    /// The address holds its cap already: refuse.
    AddressFull,
}

impl<E: Held> Table<E> {
    pub fn new(max_conns: usize, max_per_ip: usize) -> Table<E> {
        Table { entries: BTreeMap::new(), per_ip: BTreeMap::new(), max_conns, max_per_ip }
    }

    pub fn room_for(&self, ip: IpAddr) -> Room {
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip {
            Room::AddressFull
        } else if self.entries.len() >= self.max_conns {
            Room::Full
        } else {
            Room::Free
        }
    }

    pub fn insert(&mut self, conn: ConnId, entry: E) {
        *self.per_ip.entry(entry.ip()).or_default() += 1;
        if let Some(old) = self.entries.insert(conn, entry) {
            self.forget_ip(old.ip());
        }
    }

    pub fn remove(&mut self, conn: ConnId) -> Option<E> {
        let entry = self.entries.remove(&conn)?;
        self.forget_ip(entry.ip());
        Some(entry)
    }

    fn forget_ip(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// The connection to evict first.
    pub fn victim(&self) -> Option<ConnId> {
        self.entries.iter().min_by_key(|(_, e)| e.eviction_key()).map(|(&id, _)| id)
    }

    pub fn get(&self, conn: ConnId) -> Option<&E> {
        self.entries.get(&conn)
    }

    pub fn get_mut(&mut self, conn: ConnId) -> Option<&mut E> {
        self.entries.get_mut(&conn)
    }

    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &E)> {
        self.entries.iter().map(|(&id, e)| (id, e))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Addresses holding a connection.
    pub fn addresses(&self) -> usize {
        self.per_ip.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct E(IpAddr, u32);

    impl Held for E {
        type Key = u32;
        fn ip(&self) -> IpAddr {
            self.0
        }
        fn eviction_key(&self) -> u32 {
            self.1
        }
    }

    #[test]
    fn caps_and_counts() {
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        let mut t = Table::new(3, 2);
        t.insert(ConnId(0), E(a, 5));
        t.insert(ConnId(1), E(a, 3));
        assert_eq!(t.room_for(a), Room::AddressFull);
        assert_eq!(t.room_for(b), Room::Free);
        t.insert(ConnId(2), E(b, 4));
        assert_eq!(t.room_for(b), Room::Full);
        assert_eq!(t.victim(), Some(ConnId(1)));
        t.insert(ConnId(1), E(b, 9)); // a reused id moves its count
        assert_eq!(t.room_for(a), Room::Full);
        assert_eq!(t.addresses(), 2);
        assert!(t.remove(ConnId(0)).is_some() && t.remove(ConnId(0)).is_none());
        assert_eq!((t.len(), t.addresses(), t.room_for(b)), (2, 1, Room::AddressFull));
    }
}
