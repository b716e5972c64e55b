//! Slows password guessing: per user name and per client address, a few
//! failures are free, then each further failure within the window blocks
//! the next attempt for a doubling time (1 s, 2 s, 4 s … up to 15 min). A
//! blocked attempt is refused before any password check runs, so it costs
//! almost nothing. Kept in memory per process; a success clears the user's
//! record (not the address's, or one valid account would reset it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failures allowed within the window before any wait.
    pub free: u32,
    pub window_ms: i64,
    /// The first wait; it doubles with each further failure.
    pub base_ms: i64,
    pub max_ms: i64,
}

impl Policy {
    pub const USER: Policy = Policy {
        free: 5,
        window_ms: 15 * 60_000,
        base_ms: 1_000,
        max_ms: 15 * 60_000,
    };
    pub const ADDRESS: Policy = Policy {
        free: 20,
        window_ms: 15 * 60_000,
        base_ms: 1_000,
        max_ms: 15 * 60_000,
    };
}

#[derive(Debug, Clone, Copy, Default)]
struct Record {
    failures: u32,
    first_at: i64,
    blocked_until: i64,
}

#[derive(Debug)]
struct Table<K> {
    policy: Policy,
    records: Mutex<HashMap<K, Record>>,
}

/// Records kept at most, per table; past it, expired records are dropped.
const CAP: usize = 100_000;

impl<K: std::hash::Hash + Eq + Clone> Table<K> {
    fn new(policy: Policy) -> Self {
        Table {
            policy,
            records: Mutex::new(HashMap::new()),
        }
    }

    fn wait(&self, key: &K, now: i64) -> i64 {
        let map = self.records.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).map_or(0, |r| (r.blocked_until - now).max(0))
    }

    fn fail(&self, key: &K, now: i64) {
        let p = self.policy;
        let mut map = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CAP && !map.contains_key(key) {
            map.retain(|_, r| r.blocked_until > now || now - r.first_at < p.window_ms);
            if map.len() >= CAP {
                // Still full of live records: forget the oldest half
                // rather than grow without bound.
                let mut ages: Vec<i64> = map.values().map(|r| r.first_at).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                map.retain(|_, r| r.first_at > cut);
            }
        }
        let r = map.entry(key.clone()).or_default();
        if r.failures == 0 || now - r.first_at > p.window_ms {
            *r = Record {
                failures: 0,
                first_at: now,
                blocked_until: 0,
            };
        }
        r.failures += 1;
        if r.failures > p.free {
            let doublings = (r.failures - p.free - 1).min(30);
            let wait = p.base_ms.saturating_mul(1i64 << doublings).min(p.max_ms);
            r.blocked_until = now + wait;
        }
    }

    fn clear(&self, key: &K) {
        let mut map = self.records.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }
}

/// Login throttling by user name and by address.
#[derive(Debug)]
pub struct Throttle {
    users: Table<String>,
    addresses: Table<IpAddr>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(Policy::USER, Policy::ADDRESS)
    }
}

impl Throttle {
    pub fn new(user: Policy, address: Policy) -> Throttle {
        Throttle {
            users: Table::new(user),
            addresses: Table::new(address),
        }
    }

    /// Milliseconds until this user may try again from this address; 0 when
    /// an attempt may go ahead now.
    pub fn wait_ms(&self, user: &str, addr: Option<IpAddr>, now: i64) -> i64 {
        let by_user = self.users.wait(&user.to_owned(), now);
        let by_addr = addr.map_or(0, |a| self.addresses.wait(&a, now));
        by_user.max(by_addr)
    }

    pub fn failed(&self, user: &str, addr: Option<IpAddr>, now: i64) {
        self.users.fail(&user.to_owned(), now);
        if let Some(a) = addr {
            self.addresses.fail(&a, now);
        }
    }

    pub fn succeeded(&self, user: &str) {
        self.users.clear(&user.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[test]
    fn a_few_failures_are_free_then_waits_double() {
        let t = Throttle::default();
        let mut now = 1_000_000;
        for _ in 0..5 {
            assert_eq!(t.wait_ms("alice", ADDR, now), 0);
            t.failed("alice", ADDR, now);
        }
        assert_eq!(t.wait_ms("alice", ADDR, now), 0, "five failures are free");
        t.failed("alice", ADDR, now);
        assert_eq!(t.wait_ms("alice", ADDR, now), 1_000);
        now += 1_000;
        assert_eq!(t.wait_ms("alice", ADDR, now), 0);
        t.failed("alice", ADDR, now);
        assert_eq!(t.wait_ms("alice", ADDR, now), 2_000);
        t.failed("alice", ADDR, now);
        assert_eq!(t.wait_ms("alice", ADDR, now), 4_000);
        for _ in 0..20 {
            t.failed("alice", ADDR, now);
        }
        assert_eq!(t.wait_ms("alice", ADDR, now), 15 * 60_000, "capped");
        assert_eq!(t.wait_ms("bob", None, now), 0, "other users are not slowed");
        t.succeeded("alice");
        assert_eq!(t.wait_ms("alice", None, now), 0);
    }

    #[test]
    fn the_window_forgets_old_failures() {
        let t = Throttle::default();
        for i in 0..6 {
            t.failed("carol", None, i);
        }
        assert!(t.wait_ms("carol", None, 10) > 0);
        let later = 16 * 60_000;
        assert_eq!(t.wait_ms("carol", None, later), 0);
        t.failed("carol", None, later);
        assert_eq!(
            t.wait_ms("carol", None, later),
            0,
            "a new window starts free"
        );
    }

    #[test]
    fn one_address_guessing_many_users_is_slowed() {
        let t = Throttle::default();
        for i in 0..20 {
            t.failed(&format!("user{i}"), ADDR, 0);
        }
        assert_eq!(t.wait_ms("someone-new", ADDR, 0), 0);
        t.failed("user20", ADDR, 0);
        assert_eq!(t.wait_ms("someone-new", ADDR, 0), 1_000);
        assert_eq!(t.wait_ms("someone-new", None, 0), 0);
    }
}
