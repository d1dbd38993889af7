//! The clock of the background tasks (sealer, roller, sweeper, flushers): a tick every interval until shutdown.

use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Ticks every `interval` (the first at once; a late tick delays the next rather than bunching up) until
/// `shutdown` is cancelled.
pub struct Ticks {
    ticker: Interval,
    shutdown: CancellationToken,
}

impl Ticks {
    pub fn new(interval: Duration, shutdown: &CancellationToken) -> Ticks {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ticks {
            ticker,
            shutdown: shutdown.clone(),
        }
    }

    /// Waits for the next tick: true when it came, false as soon as shutdown is cancelled.
    pub async fn next(&mut self) -> bool {
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => false,
            _ = self.ticker.tick() => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ticks_until_shutdown() {
        let shutdown = CancellationToken::new();
        let mut ticks = Ticks::new(Duration::from_millis(1), &shutdown);
        assert!(ticks.next().await);
        assert!(ticks.next().await);
        shutdown.cancel();
        assert!(!ticks.next().await);
    }
}
