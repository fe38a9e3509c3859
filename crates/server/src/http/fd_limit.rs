//! Making `--max-connections` and the process's open-file limit agree at start-up.
//!
//! Every connection is a file descriptor, a proxied call holds a second one upstream, and the
//! store needs its own (the database, its write-ahead log, temporary files). A cap above the
//! soft `RLIMIT_NOFILE` (1024 in a default shell or service) meant a flood met the file limit
//! before the cap: accepts failed, clients got no answer at all, and the database could not
//! open what it needed. So the soft limit is raised to what the cap needs (as far as the hard
//! limit allows), and when even that is too little the cap is lowered to fit, and said so.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept for everything that is not a client connection: the store, the
/// listener, scrapes, logs.
pub const RESERVED: u64 = 256;

/// What start-up settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// The connection cap to use.
    pub max_connections: usize,
    /// The soft open-file limit before and after (`None`: unlimited).
    pub soft_before: Option<u64>,
    /// The soft limit now.
    pub soft_after: Option<u64>,
}

/// Raises the soft open-file limit for `max_connections` connections holding
/// `per_connection` descriptors each, or lowers the cap to what the hard limit allows.
pub fn fit(max_connections: usize, per_connection: u64) -> Fit {
    let limits = getrlimit(Resource::Nofile);
    let wanted = (max_connections as u64)
        .saturating_mul(per_connection)
        .saturating_add(RESERVED);
    let soft_before = limits.current;
    let mut soft_after = soft_before;
    if soft_before.is_some_and(|soft| soft < wanted) {
        let target = limits.maximum.map_or(wanted, |hard| hard.min(wanted));
        let raised = Rlimit {
            current: Some(target),
            maximum: limits.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            soft_after = Some(target);
        }
    }
    let max_connections = match soft_after {
        Some(soft) if soft < wanted => {
            let fits = soft.saturating_sub(RESERVED) / per_connection.max(1);
            usize::try_from(fits).unwrap_or(usize::MAX).max(1)
        }
        _ => max_connections,
    };
    Fit {
        max_connections,
        soft_before,
        soft_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_within_the_hard_limit_raises_the_soft_one_and_stays() {
        let hard = getrlimit(Resource::Nofile).maximum;
        let fit = fit(64, 2);
        assert_eq!(fit.max_connections, 64);
        assert!(fit.soft_after.is_none_or(|soft| soft >= 64 * 2 + RESERVED));
        assert_eq!(
            getrlimit(Resource::Nofile).maximum,
            hard,
            "the hard limit is kept"
        );
    }
}
