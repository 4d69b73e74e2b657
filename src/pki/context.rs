//! The two sources of non-determinism in a certificate, time and serial
//! number, injected so that tests and snapshots are exact.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::error::{PkiError, Result};

/// Where "now" comes from when certificates are issued.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock stopped at one instant, for tests and snapshots.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub SystemTime);

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        self.0
    }
}

/// Where certificate serial numbers come from.
pub trait SerialSource: Send + Sync {
    /// The next serial number, big-endian. It is read as a non-negative
    /// integer; it must be non-zero and at most 20 bytes long (RFC 5280).
    fn next_serial(&self) -> Vec<u8>;
}

/// Random serial numbers: 20 bytes from the system's secure RNG, with the top
/// bit cleared so the number is positive and the next bit set so it is
/// never zero and always 20 bytes long. (kubeadm uses a random non-negative
/// serial too, though a shorter one.)
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomSerials;

impl SerialSource for RandomSerials {
    fn next_serial(&self) -> Vec<u8> {
        let mut serial = vec![0u8; 20];
        if aws_lc_rs::rand::fill(&mut serial).is_err() {
            // The RNG does not fail on a working system; an all-zero serial is
            // refused at signing time rather than panicking here.
            return vec![0];
        }
        serial[0] = (serial[0] & 0x7f) | 0x40;
        serial
    }
}

/// Serial numbers counting up from a start value: 1, 2, 3, ... by default.
#[derive(Debug)]
pub struct SequentialSerials {
    next: AtomicU64,
}

impl SequentialSerials {
    /// Starts counting at `first` (0 is skipped, as serials must be positive).
    #[must_use]
    pub fn new(first: u64) -> Self {
        Self { next: AtomicU64::new(first.max(1)) }
    }
}

impl Default for SequentialSerials {
    fn default() -> Self {
        Self::new(1)
    }
}

impl SerialSource for SequentialSerials {
    fn next_serial(&self) -> Vec<u8> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let bytes = n.to_be_bytes();
        let first = bytes.iter().position(|&b| b != 0).unwrap_or(7);
        bytes[first..].to_vec()
    }
}

/// The clock and serial source certificates are issued with. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    clock: Arc<dyn Clock>,
    serials: Arc<dyn SerialSource>,
}

impl Context {
    /// A context from any clock and serial source.
    pub fn new(clock: impl Clock + 'static, serials: impl SerialSource + 'static) -> Self {
        Self { clock: Arc::new(clock), serials: Arc::new(serials) }
    }

    /// The real thing: system time and random serials.
    #[must_use]
    pub fn system() -> Self {
        Self::new(SystemClock, RandomSerials)
    }

    /// A reproducible context: time stopped at `now`, serials counting from `first_serial`.
    #[must_use]
    pub fn fixed(now: SystemTime, first_serial: u64) -> Self {
        Self::new(FixedClock(now), SequentialSerials::new(first_serial))
    }

    /// The current time according to the clock.
    #[must_use]
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// The next serial number, checked and with leading zero bytes removed.
    pub(crate) fn serial(&self) -> Result<Vec<u8>> {
        let raw = self.serials.next_serial();
        let first = raw.iter().position(|&b| b != 0);
        let Some(first) = first else {
            return Err(PkiError::Serial { reason: "serial source returned zero or nothing".to_owned() });
        };
        let serial = raw[first..].to_vec();
        // A positive INTEGER of 20 content bytes at most: 20 bytes with the top bit clear.
        if serial.len() > 20 || (serial.len() == 20 && serial[0] & 0x80 != 0) {
            return Err(PkiError::Serial {
                reason: format!(
                    "serial source returned {} significant bytes, more than RFC 5280's 20",
                    serial.len()
                ),
            });
        }
        Ok(serial)
    }
}

impl Default for Context {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn sequential_serials_count_from_start() {
        let ctx = Context::fixed(UNIX_EPOCH + Duration::from_secs(10), 255);
        assert_eq!(ctx.serial().unwrap(), vec![0xff]);
        assert_eq!(ctx.serial().unwrap(), vec![0x01, 0x00]);
        assert_eq!(ctx.now(), UNIX_EPOCH + Duration::from_secs(10));
    }

    #[test]
    fn random_serials_are_positive_twenty_bytes_and_differ() {
        let ctx = Context::system();
        let a = ctx.serial().unwrap();
        let b = ctx.serial().unwrap();
        assert_eq!(a.len(), 20);
        assert_eq!(a[0] & 0x80, 0);
        assert_ne!(a, b);
    }

    struct Bad(Vec<u8>);
    impl SerialSource for Bad {
        fn next_serial(&self) -> Vec<u8> {
            self.0.clone()
        }
    }

    #[test]
    fn bad_serials_are_refused() {
        for bad in [vec![], vec![0, 0], vec![0xff; 20], vec![1; 21]] {
            let ctx = Context::new(SystemClock, Bad(bad.clone()));
            assert!(ctx.serial().is_err(), "{bad:?}");
        }
        let ctx = Context::new(SystemClock, Bad(vec![0, 0, 5]));
        assert_eq!(ctx.serial().unwrap(), vec![5]);
    }
}
