//! Webhook rules (DESIGN §12): which run events an endpoint can subscribe to, when a failed
//! delivery is tried again, when it gives up, and which addresses a delivery may reach.
//! Pure: the caller passes every instant and every random draw in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{RunId, Timestamp};

/// A run event a webhook endpoint can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WebhookEvent {
    /// The run completed (any outcome, cancellation included): written with the terminal
    /// transition, exactly once per run.
    Completed,
}

impl WebhookEvent {
    /// Every event, in the order documents list them.
    pub const ALL: [Self; 1] = [Self::Completed];

    /// The event's type as endpoints and payloads name it.
    #[must_use]
    pub const fn key(self) -> &'static str {
        match self {
            Self::Completed => "operation.completed",
        }
    }

    /// The event named `key`, if there is one.
    #[must_use]
    pub fn parse(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.key() == key)
    }

    /// The stable id of this event of run `run`: every delivery of it, to every endpoint and
    /// on every retry or redelivery, carries the same id, so a receiver de-duplicates by it.
    /// Each event happens at most once per run, so the pair names it.
    ///
    /// ```
    /// use opsrun_domain::{RunId, WebhookEvent};
    /// assert_eq!(WebhookEvent::Completed.event_id(RunId::new(42)), "evt_42_completed");
    /// ```
    #[must_use]
    pub fn event_id(self, run: RunId) -> String {
        let suffix = match self {
            Self::Completed => "completed",
        };
        format!("evt_{}_{suffix}", run.value())
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// An attempt was answered with a 2xx.
    Delivered,
    /// Every attempt failed until the retry window closed.
    Failed,
}

impl DeliveryState {
    /// Every state.
    pub const ALL: [Self; 3] = [Self::Pending, Self::Delivered, Self::Failed];

    /// The state's name in documents and storage.
    #[must_use]
    pub const fn key(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// The state named `key`, if there is one.
    #[must_use]
    pub fn parse(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.key() == key)
    }
}

/// When failed deliveries are tried again: exponential backoff from `base_ms`, doubling per
/// attempt up to `cap_ms`, with full jitter over the upper half of each delay (so endpoints
/// that failed together do not come back together), until `window_ms` after the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    /// Delay after the first failed attempt.
    pub base_ms: i64,
    /// Longest delay between two attempts.
    pub cap_ms: i64,
    /// How long after the event attempts go on; past it the delivery is `failed`.
    pub window_ms: i64,
}

impl Default for RetrySchedule {
    /// 10 s doubling to at most 1 h, for 24 h (Stripe and GitHub retry for about a day).
    fn default() -> Self {
        Self {
            base_ms: 10_000,
            cap_ms: 3_600_000,
            window_ms: 86_400_000,
        }
    }
}

impl RetrySchedule {
    /// After failed attempt number `attempts` (1 for the first) of an event that occurred
    /// at `occurred`, at `now`: when to try again, or `None` when the window is closed.
    /// `jitter` is a draw from `[0, 1)`; values outside are clamped.
    ///
    /// ```
    /// use opsrun_domain::{RetrySchedule, Timestamp};
    /// let s = RetrySchedule { base_ms: 1_000, cap_ms: 8_000, window_ms: 60_000 };
    /// let t0 = Timestamp::from_millis(0);
    /// // The second retry waits between 1 and 2 s (half of 2 s, plus jitter).
    /// let next = s.next_attempt(2, t0, t0, 0.0).unwrap();
    /// assert_eq!(next.as_millis(), 1_000);
    /// // Past the window: give up.
    /// assert_eq!(s.next_attempt(9, t0, Timestamp::from_millis(60_000), 0.5), None);
    /// ```
    #[must_use]
    pub fn next_attempt(
        &self,
        attempts: u32,
        occurred: Timestamp,
        now: Timestamp,
        jitter: f64,
    ) -> Option<Timestamp> {
        let shift = attempts.saturating_sub(1).min(40);
        let full = self
            .base_ms
            .max(1)
            .saturating_mul(1_i64 << shift)
            .min(self.cap_ms.max(1));
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let half = full / 2;
        // Truncation is fine: the draw only spreads attempts, it never needs to be exact.
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_precision_loss,
            reason = "a delay of at most an hour in milliseconds is exact in an f64"
        )]
        let spread = (half as f64 * jitter) as i64;
        let next = now.plus_millis(full - half + spread);
        (next.millis_since(occurred) < self.window_ms).then_some(next)
    }
}

/// Whether a delivery may connect to `ip` when private addresses are not allowed: only
/// globally routable unicast addresses pass. Loopback, private (RFC 1918, unique local),
/// link-local (cloud metadata services live there), shared (CGNAT), unspecified, broadcast,
/// documentation, benchmarking and multicast addresses are refused, as are IPv6 addresses
/// that embed an IPv4 one which would be refused.
///
/// ```
/// use opsrun_domain::is_public_address;
/// assert!(is_public_address("93.184.216.34".parse().unwrap()));
/// assert!(!is_public_address("169.254.169.254".parse().unwrap()));
/// assert!(!is_public_address("::ffff:127.0.0.1".parse().unwrap()));
/// ```
#[must_use]
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        // 100.64.0.0/10: shared address space (carrier-grade NAT).
        || (a == 100 && (64..128).contains(&b))
        // 192.0.0.0/24: IETF protocol assignments.
        || (a == 192 && b == 0 && c == 0)
        // 198.18.0.0/15: benchmarking.
        || (a == 198 && (b == 18 || b == 19))
        // 240.0.0.0/4: reserved.
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    let first = segments[0];
    // ::ffff:0:a.b.c.d (IPv4-translated) embeds an IPv4 address too.
    if segments[..4] == [0, 0, 0, 0] && segments[4] == 0xffff && segments[5] == 0 {
        let [a, b] = segments[6].to_be_bytes();
        let [c, d] = segments[7].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        // fec0::/10 site-local (deprecated, still routed inside some networks).
        || (first & 0xffc0) == 0xfec0
        // 2001:db8::/32 documentation; 2001::/32 Teredo and 2002::/16 6to4 embed IPv4.
        || (first == 0x2001 && (segments[1] == 0x0db8 || segments[1] == 0))
        || first == 0x2002
        // 64:ff9b::/96 and 64:ff9b:1::/48 NAT64 and ::/96 IPv4-compatible can reach IPv4
        // internals.
        || (first == 0x0064 && segments[1] == 0xff9b)
        || segments[..6].iter().all(|s| *s == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        // A typo in the lists below must fail, not test 0.0.0.0.
        text.parse()
            .unwrap_or_else(|_| panic!("not an address: {text}"))
    }

    #[test]
    fn only_globally_routable_addresses_are_public() {
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "1.1.1.1"] {
            assert!(is_public_address(ip(public)), "{public}");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "64:ff9b:1::a00:1",
            "2001:db8::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2002:c0a8:101::1",
            "fec0::1",
            "::ffff:0:7f00:1",
        ] {
            assert!(!is_public_address(ip(private)), "{private}");
        }
    }

    #[test]
    fn retries_back_off_exponentially_within_the_window_and_then_stop() {
        let s = RetrySchedule {
            base_ms: 1_000,
            cap_ms: 4_000,
            window_ms: 20_000,
        };
        let t0 = Timestamp::from_millis(0);
        let delays: Vec<i64> = (1..=5)
            .map(|n| {
                s.next_attempt(n, t0, t0, 0.999_999)
                    .map_or(-1, Timestamp::as_millis)
            })
            .collect();
        assert_eq!(delays, vec![999, 1_999, 3_999, 3_999, 3_999]);
        let low: Vec<i64> = (1..=3)
            .map(|n| {
                s.next_attempt(n, t0, t0, 0.0)
                    .map_or(-1, Timestamp::as_millis)
            })
            .collect();
        assert_eq!(low, vec![500, 1_000, 2_000]);
        assert_eq!(
            s.next_attempt(3, t0, Timestamp::from_millis(18_000), 0.0),
            None
        );
        assert_eq!(
            s.next_attempt(u32::MAX, t0, t0, f64::NAN)
                .map(Timestamp::as_millis),
            Some(2_000)
        );
    }

    #[test]
    fn events_have_stable_keys_and_ids() {
        for event in WebhookEvent::ALL {
            assert_eq!(WebhookEvent::parse(event.key()), Some(event));
        }
        assert_eq!(WebhookEvent::parse("operation.paused"), None);
        assert_eq!(
            WebhookEvent::Completed.event_id(RunId::new(7)),
            "evt_7_completed"
        );
        for state in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(state.key()), Some(state));
        }
    }
}
