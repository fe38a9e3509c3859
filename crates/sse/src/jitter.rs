//! Where reconnect delays get their jitter: an xorshift64* sequence, seeded from the clock (or
//! a fixed seed in tests), so that clients that lost one server do not all come back at once.
//! Nothing else needs randomness here; it is not for anything secret.

/// An xorshift64* sequence of fractions in [0, 1).
#[derive(Debug, Clone)]
pub(crate) struct Jitter(u64);

impl Jitter {
    /// A sequence from this seed (0 is moved off, which xorshift would never leave).
    pub(crate) fn seeded(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// A sequence seeded from the clock and a stack address, different in every client.
    pub(crate) fn from_clock() -> Self {
        let nanos = web_time::SystemTime::now()
            .duration_since(web_time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let here = 0u8;
        #[allow(clippy::cast_possible_truncation)] // Only the low bits matter for a seed.
        let address = std::ptr::from_ref(&here) as usize as u64;
        #[allow(clippy::cast_possible_truncation)] // As above.
        Self::seeded((nanos as u64).wrapping_mul(0x2545_F491_4F6C_DD1D) ^ address)
    }

    /// The next fraction, uniform in [0, 1).
    pub(crate) fn fraction(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let bits = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        #[allow(clippy::cast_precision_loss)] // 53 bits fit an f64 mantissa exactly.
        let fraction = bits as f64 / (1u64 << 53) as f64;
        fraction
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_stay_in_range_and_spread_out() {
        let mut jitter = Jitter::seeded(7);
        let draws: Vec<f64> = (0..10_000).map(|_| jitter.fraction()).collect();
        assert!(draws.iter().all(|f| (0.0..1.0).contains(f)));
        let low = draws.iter().filter(|f| **f < 0.5).count();
        assert!(
            (4_500..5_500).contains(&low),
            "{low} of 10000 below one half"
        );
        let mut a = Jitter::seeded(3);
        let mut b = Jitter::seeded(3);
        assert_eq!(a.fraction().to_bits(), b.fraction().to_bits());
    }
}
