//! Adaptive pacing of one endpoint (pure): when a store answers SlowDown
//! (503) or 429, cut the requests in flight and the request rate at once
//! (multiplicative decrease), and win them back slowly with each request it
//! takes (additive increase), as TCP congestion avoidance does and as the
//! AWS SDKs' adaptive retry mode does for the rate. The agent's `gate.rs`
//! applies it to every request; time is passed in, so the rules are
//! table-tested here.

/// Share of the level kept after a throttle.
pub const BETA: f64 = 0.7;
/// Lowest request rate, requests per second.
pub const MIN_RATE: f64 = 0.5;
/// At most one cut per this many milliseconds: a burst of throttled
/// answers to requests sent together is one signal, not many.
pub const CUT_EVERY_MS: u64 = 1000;

/// The adaptive level of one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Aimd {
    /// Requests in flight allowed.
    limit: f64,
    /// The most `limit` grows to.
    ceiling: f64,
    /// Requests per second allowed, once throttled; `None`: unpaced.
    rate: Option<f64>,
    /// The rate measured when last throttled; pacing ends above twice it.
    rate_at_throttle: f64,
    /// When the last cut was made.
    last_cut_ms: Option<u64>,
}

impl Aimd {
    /// Unthrottled: `ceiling` requests in flight, no pacing.
    pub fn new(ceiling: u32) -> Self {
        let ceiling = f64::from(ceiling.max(1));
        Self {
            limit: ceiling,
            ceiling,
            rate: None,
            rate_at_throttle: 0.0,
            last_cut_ms: None,
        }
    }

    /// Requests in flight allowed now (at least 1).
    pub fn limit(&self) -> u32 {
        (self.limit.floor() as u32).max(1)
    }

    /// Requests per second allowed now, if paced.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// A throttling answer at `now_ms`, with `in_flight` requests out and
    /// `measured` requests per second sent lately. Cuts both levels to
    /// [`BETA`] of what was in use, at most once per [`CUT_EVERY_MS`];
    /// returns whether it cut.
    pub fn throttled(&mut self, now_ms: u64, in_flight: u32, measured: f64) -> bool {
        if self
            .last_cut_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < CUT_EVERY_MS)
        {
            return false;
        }
        let in_use = self.limit.min(f64::from(in_flight.max(1)));
        self.limit = (in_use * BETA).max(1.0);
        let sent = self
            .rate
            .unwrap_or(f64::INFINITY)
            .min(measured.max(MIN_RATE));
        self.rate = Some((sent * BETA).max(MIN_RATE));
        self.rate_at_throttle = sent;
        self.last_cut_ms = Some(now_ms);
        true
    }

    /// A request the store took. The limit grows by one per limit's worth
    /// of requests; the rate by 1/s per second at low rates, 5 % per second
    /// at high ones. Pacing ends once the rate is twice the throttled one.
    pub fn succeeded(&mut self) {
        self.limit = (self.limit + 1.0 / self.limit).min(self.ceiling);
        if let Some(r) = self.rate {
            let r = r + (1.0 / r).max(0.05);
            self.rate = (r <= 2.0 * self.rate_at_throttle).then_some(r);
        }
    }
}

/// Requests started per second, over whole seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateWindow {
    /// The second being counted (ms since the epoch / 1000).
    second: u64,
    /// Requests in it so far.
    this: u32,
    /// Requests in the second before.
    last: u32,
}

impl RateWindow {
    /// A request started at `now_ms`.
    pub fn record(&mut self, now_ms: u64) {
        self.roll(now_ms);
        self.this = self.this.saturating_add(1);
    }

    /// Requests per second lately: the last whole second's count, or this
    /// second's if it already has more.
    pub fn per_sec(&mut self, now_ms: u64) -> f64 {
        self.roll(now_ms);
        f64::from(self.last.max(self.this))
    }

    fn roll(&mut self, now_ms: u64) {
        let second = now_ms / 1000;
        if second == self.second {
            return;
        }
        self.last = if second == self.second + 1 {
            self.this
        } else {
            0
        };
        self.this = 0;
        self.second = second;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_cuts_what_was_in_use_once_per_second() {
        let mut a = Aimd::new(1024);
        assert_eq!((a.limit(), a.rate()), (1024, None));
        // 40 requests out at 200/s: cut to 70 % of those, not of 1024.
        assert!(a.throttled(10_000, 40, 200.0));
        assert_eq!(a.limit(), 28);
        assert_eq!(a.rate(), Some(140.0));
        // The other answers of that burst change nothing.
        assert!(!a.throttled(10_500, 40, 200.0));
        assert_eq!((a.limit(), a.rate()), (28, Some(140.0)));
        // A second later, throttled again: cut from the current levels.
        assert!(a.throttled(11_000, 28, 150.0));
        assert_eq!(a.limit(), 19);
        assert_eq!(a.rate(), Some(98.0));
    }

    #[test]
    fn levels_never_reach_zero() {
        let mut a = Aimd::new(4);
        for s in 0..50u64 {
            a.throttled(s * 1000, 1, 0.0);
        }
        assert_eq!(a.limit(), 1);
        assert_eq!(a.rate(), Some(MIN_RATE));
        assert_eq!(Aimd::new(0).limit(), 1);
    }

    #[test]
    fn recovery_is_slow_and_pacing_ends_above_twice_the_throttled_rate() {
        let mut a = Aimd::new(64);
        a.throttled(0, 10, 10.0);
        assert_eq!((a.limit(), a.rate()), (7, Some(7.0)));
        // About a second's worth of successes at 7/s adds one in flight
        // and 1/s.
        for _ in 0..8 {
            a.succeeded();
        }
        assert_eq!(a.limit(), 8);
        let r = a.rate().unwrap();
        assert!((7.9..8.1).contains(&r), "{r}");
        // From 7/s to 20/s (twice the throttled 10/s) takes well over ten
        // seconds' worth of requests; then pacing ends.
        let mut n = 0;
        while a.rate().is_some() {
            a.succeeded();
            n += 1;
        }
        assert!((100..200).contains(&n), "{n}");
        for _ in 0..10_000 {
            a.succeeded();
        }
        assert_eq!(a.limit(), 64, "the limit stops at the ceiling");
    }

    #[test]
    fn high_rates_recover_by_five_percent_per_second() {
        let mut a = Aimd::new(1024);
        a.throttled(0, 500, 1000.0);
        let r0 = a.rate().unwrap();
        for _ in 0..700 {
            a.succeeded();
        }
        let r1 = a.rate().unwrap();
        assert!((r1 - r0 - 35.0).abs() < 1.0, "{r0} -> {r1}");
    }

    #[test]
    fn the_window_counts_whole_seconds() {
        let mut w = RateWindow::default();
        for i in 0..30u64 {
            w.record(5_000 + i * 10);
        }
        assert_eq!(w.per_sec(5_900), 30.0);
        w.record(6_100);
        assert_eq!(w.per_sec(6_200), 30.0, "last second's 30");
        assert_eq!(w.per_sec(7_000), 1.0, "the second before had 1");
        assert_eq!(w.per_sec(9_000), 0.0, "idle seconds forget");
    }
}
