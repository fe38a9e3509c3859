//! Run ids. Ids are opaque to clients; how they are made matters to the store, which indexes
//! runs and events by id: random ids put every new run at a random place in those indexes,
//! so each commit at fleet rates dirtied (and wrote to the write-ahead log, and read back) a
//! page per run. Ids made in time order land together at the indexes' ends instead.
//!
//! - Unseeded (every real server): `run-` and 16 characters of lowercase Crockford base32 (80
//!   bits): the milliseconds since the Unix epoch (45 bits) and 35 random bits, raised where
//!   needed so that each id is above the one before. A server never repeats an id: they only
//!   rise, from above the newest id in its store, so a clock set back after a restart does not
//!   bring back old ones. Instances sharing a store put their tag in the top 10 of those bits
//!   ([`instance_tag`], different for every alive instance: see `membership::identity`), so
//!   two of them never make the same id, however many runs they make in one millisecond: with
//!   random bits alone, two instances at 2,700 runs/s each met about once in a few weeks, and
//!   the second run's events were refused by the store's unique index.
//! - Seeded (`--seed`, for reproducible demos and tests): `run-` and 12 hex digits from the
//!   seeded generator, as before, so the same seed gives the same runs.

use super::rng::SplitMix64;

/// Lowercase Crockford base32: digits then letters without i, l, o and u, in ASCII order, so
/// ids of one length sort as their numbers do.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Characters after `run-` in an ordered id: 80 bits at 5 bits each.
const ORDERED_CHARS: usize = 16;
/// Random bits below the milliseconds.
const RANDOM_BITS: u32 = 35;
/// A stored id further ahead of the clock than this is no floor (it was not made by a clock
/// set a little ahead, and following it would push every new id out of the numbers' range).
const FLOOR_AHEAD_MS: u64 = 7 * 24 * 3_600_000;
/// Fresh random bits are drawn below this, leaving room above for ids that must rise within
/// one millisecond.
const RANDOM_SPAN: u64 = 1 << (RANDOM_BITS - 1);
/// Bits of an instance's tag, at the top of the random bits, on a shared store.
const TAG_BITS: u32 = 10;
/// Instances told apart by their tag.
pub const TAGS: u16 = 1 << TAG_BITS;
/// Where the tag sits: the bits below it are the tagged ids' own.
const TAG_SHIFT: u32 = RANDOM_BITS - TAG_BITS;
/// Fresh bits below the tag are drawn below this (room above, as [`RANDOM_SPAN`]).
const TAGGED_SPAN: u64 = 1 << (TAG_SHIFT - 1);

/// A hash of an instance's id (FNV-1a), the same on every build.
pub fn instance_hash(instance: &str) -> u64 {
    instance
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// The tag that an instance with this id puts in its run ids on a shared store.
pub fn instance_tag(instance: &str) -> u16 {
    #[allow(clippy::cast_possible_truncation)] // Below `TAGS`.
    let tag = (instance_hash(instance) % u64::from(TAGS)) as u16;
    tag
}

/// Makes the ids of new runs, and draws their generators' seeds.
#[derive(Debug)]
pub struct RunIds {
    rng: SplitMix64,
    order: Order,
}

#[derive(Debug)]
enum Order {
    /// Reproducible: drawn from the seeded generator.
    Seeded,
    /// In time order; the last id made (as its 80-bit number), which the next one exceeds,
    /// and this instance's tag on a shared store.
    Ordered { last: u128, tag: Option<u16> },
}

impl RunIds {
    /// Ids drawn from a seeded generator: the same seed, the same ids.
    pub fn seeded(rng: SplitMix64) -> Self {
        Self {
            rng,
            order: Order::Seeded,
        }
    }

    /// Ids in time order, each above `newest` (the newest run id in the store, if any), each
    /// carrying `tag` (this instance's, on a shared store).
    pub fn ordered(rng: SplitMix64, newest: Option<&str>, tag: Option<u16>) -> Self {
        Self {
            rng,
            order: Order::Ordered {
                last: newest
                    .and_then(decode)
                    .filter(|&floor| floor >> RANDOM_BITS <= u128::from(now_ms() + FLOOR_AHEAD_MS))
                    .unwrap_or(0),
                tag,
            },
        }
    }

    /// A new run's id and the seed of its generator.
    pub fn next(&mut self) -> (String, u64) {
        let id = match &mut self.order {
            Order::Seeded => format!("run-{:012x}", self.rng.next_u64() >> 16),
            Order::Ordered { last, tag: None } => {
                let fresh = (u128::from(now_ms()) << RANDOM_BITS)
                    | u128::from(self.rng.next_u64() % RANDOM_SPAN);
                *last = fresh.max(*last + 1);
                encode(*last)
            }
            Order::Ordered {
                last,
                tag: Some(tag),
            } => {
                let fresh = (u128::from(now_ms()) << RANDOM_BITS)
                    | (u128::from(*tag) << TAG_SHIFT)
                    | u128::from(self.rng.next_u64() % TAGGED_SPAN);
                *last = tagged_from(fresh.max(*last + 1), *tag);
                encode(*last)
            }
        };
        (id, self.seed())
    }

    /// A seed for a generator, drawn as a new run's is (a recovered run gets a new one).
    pub fn seed(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn now_ms() -> u64 {
    web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// The smallest number from `value` on that carries `tag`: the same millisecond if its tag
/// comes at or after `value`'s, else the next millisecond's first. (The floor may be another
/// instance's id, and `+ 1` can carry into the tag.)
fn tagged_from(value: u128, tag: u16) -> u128 {
    let tag = u128::from(tag);
    let millis = value >> RANDOM_BITS;
    let current = (value >> TAG_SHIFT) & (u128::from(TAGS) - 1);
    match current.cmp(&tag) {
        std::cmp::Ordering::Equal => value,
        std::cmp::Ordering::Less => (millis << RANDOM_BITS) | (tag << TAG_SHIFT),
        std::cmp::Ordering::Greater => ((millis + 1) << RANDOM_BITS) | (tag << TAG_SHIFT),
    }
}

/// The id of an 80-bit number.
fn encode(value: u128) -> String {
    let mut id = String::with_capacity(4 + ORDERED_CHARS);
    id.push_str("run-");
    for index in (0..ORDERED_CHARS).rev() {
        #[allow(clippy::cast_possible_truncation)] // Five bits.
        let digit = ((value >> (5 * index)) & 31) as usize;
        id.push(char::from(ALPHABET[digit]));
    }
    id
}

/// The number of an ordered id; `None` for any other id (a seeded one, or one made before ids
/// were ordered).
fn decode(id: &str) -> Option<u128> {
    let digits = id.strip_prefix("run-")?;
    if digits.len() != ORDERED_CHARS {
        return None;
    }
    digits.bytes().try_fold(0u128, |value, byte| {
        let digit = ALPHABET.iter().position(|&c| c == byte)?;
        Some((value << 5) | digit as u128)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_ids_rise_in_string_order_and_never_repeat_within_a_millisecond() {
        let mut ids = RunIds::ordered(SplitMix64::new(7), None, None);
        let made: Vec<String> = (0..10_000).map(|_| ids.next().0).collect();
        for pair in made.windows(2) {
            assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
        }
        assert!(made.iter().all(|id| id.len() == 4 + ORDERED_CHARS));
        assert!(
            made.iter()
                .all(|id| id[4..].bytes().all(|b| ALPHABET.contains(&b)))
        );
    }

    #[test]
    fn an_ordered_id_carries_the_time_it_was_made() {
        let before = now_ms();
        let (id, _) = RunIds::ordered(SplitMix64::new(1), None, None).next();
        let after = now_ms();
        let made = u64::try_from(decode(&id).unwrap() >> RANDOM_BITS).unwrap();
        assert!(
            (before..=after).contains(&made),
            "{before} <= {made} <= {after}"
        );
    }

    #[test]
    fn ids_continue_above_the_newest_stored_even_when_it_is_ahead_of_the_clock() {
        // A store written while the clock was an hour ahead.
        let ahead = (u128::from(now_ms() + 3_600_000) << RANDOM_BITS) | 0x3039;
        let newest = encode(ahead);
        let mut ids = RunIds::ordered(SplitMix64::new(3), Some(&newest), None);
        let (first, _) = ids.next();
        assert!(first > newest, "{first} after {newest}");
        assert_eq!(decode(&first), Some(ahead + 1));
    }

    #[test]
    fn a_stored_id_far_ahead_of_the_clock_is_no_floor() {
        let far = encode(u128::from(now_ms() + 10 * FLOOR_AHEAD_MS) << RANDOM_BITS);
        let (id, _) = RunIds::ordered(SplitMix64::new(5), Some(&far), None).next();
        assert!(id < far, "{id} before {far}");
        let top = encode((1 << 80) - 1);
        let (id, _) = RunIds::ordered(SplitMix64::new(5), Some(&top), None).next();
        assert!(id < top && decode(&id).is_some(), "{id}");
    }

    #[test]
    fn other_ids_in_the_store_are_no_floor() {
        for other in [
            "run-63033b0ca389",
            "run-1",
            "job-0123456789abcdef",
            "run-0123456789abcdeu",
        ] {
            assert_eq!(decode(other), None, "{other}");
        }
        let mut ids = RunIds::ordered(SplitMix64::new(3), Some("run-63033b0ca389"), None);
        assert!(decode(&ids.next().0).is_some());
    }

    /// Two instances on one store, started on the same newest id, making ids as fast as they
    /// can: never the same id, each in rising order, each with its own tag.
    #[test]
    fn instances_with_different_tags_never_make_the_same_id() {
        let newest = encode((u128::from(now_ms()) << RANDOM_BITS) | (700 << TAG_SHIFT) | 5);
        let mut seen = std::collections::HashSet::new();
        for (seed, tag) in [(1, 3_u16), (1, 700), (2, 701)] {
            let mut ids = RunIds::ordered(SplitMix64::new(seed), Some(&newest), Some(tag));
            let made: Vec<String> = (0..20_000).map(|_| ids.next().0).collect();
            for pair in made.windows(2) {
                assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
            }
            assert!(made[0] > newest, "{} after {newest}", made[0]);
            for id in made {
                let number = decode(&id).unwrap();
                assert_eq!(
                    (number >> TAG_SHIFT) & (u128::from(TAGS) - 1),
                    u128::from(tag)
                );
                assert!(seen.insert(id.clone()), "{id} made twice");
            }
        }
    }

    #[test]
    fn a_tagged_id_is_the_next_number_with_its_tag() {
        let at =
            |millis: u128, tag: u128, low: u128| (millis << RANDOM_BITS) | (tag << TAG_SHIFT) | low;
        assert_eq!(tagged_from(at(9, 4, 17), 4), at(9, 4, 17));
        assert_eq!(tagged_from(at(9, 2, 17), 4), at(9, 4, 0));
        assert_eq!(tagged_from(at(9, 5, 0), 4), at(10, 4, 0));
        // `+ 1` past the tag's last number carries into the next tag.
        assert_eq!(
            tagged_from(at(9, 4, (1 << TAG_SHIFT) - 1) + 1, 4),
            at(10, 4, 0)
        );
        assert_eq!(tagged_from(at(9, u128::from(TAGS) - 1, 3), 0), at(10, 0, 0));
        assert!(
            (0..u16::MAX)
                .map(|n| instance_tag(&format!("i-{n:010x}")))
                .all(|t| t < TAGS)
        );
    }

    #[test]
    fn encoding_round_trips_and_keeps_numeric_order() {
        let mut rng = SplitMix64::new(11);
        let mut values: Vec<u128> = (0..1000)
            .map(|_| (u128::from(rng.next_u64()) << 16) | u128::from(rng.next_u64() & 0xffff))
            .collect();
        values.sort_unstable();
        let encoded: Vec<String> = values.iter().map(|&v| encode(v)).collect();
        for (value, id) in values.iter().zip(&encoded) {
            assert_eq!(decode(id), Some(*value));
        }
        assert!(encoded.windows(2).all(|pair| pair[0] <= pair[1]));
    }

    #[test]
    fn seeded_ids_are_the_same_for_the_same_seed_and_keep_their_form() {
        let mut a = RunIds::seeded(SplitMix64::new(42));
        let mut b = RunIds::seeded(SplitMix64::new(42));
        for _ in 0..5 {
            let (id, seed) = a.next();
            assert_eq!((id.clone(), seed), b.next());
            assert_eq!(id.len(), 16);
            assert!(u64::from_str_radix(&id[4..], 16).is_ok(), "{id}");
        }
    }
}
