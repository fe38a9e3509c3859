//! Which view of the main area shows: the `View` enum, persisted by name with the console's
//! settings. What each view is — its key, label, needs and drawing — is its `ViewSpec` in
//! `ui/views/` (`View::spec`, whose match has no wildcard, so a new variant asks for one).

use serde::{Deserialize, Serialize};

/// Declares the views once, in tab order: the enum and its list come from this table.
macro_rules! views {
    ($($(#[$doc:meta])* $variant:ident,)*) => {
        /// The views of the main area.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum View {
            $($(#[$doc])* $variant,)*
        }

        impl View {
            /// Every view, in tab order.
            pub const ALL: [Self; [$(stringify!($variant)),*].len()] = [$(Self::$variant),*];
        }
    };
}

views! {
    /// Worker cards and the feed.
    Workers,
    /// The servers' models.
    Models,
    /// Benchmark progress.
    Benchmark,
    /// Requests in flight.
    Requests,
    /// The model servers' own load (`serve --scrape`).
    Upstreams,
}

impl Default for View {
    fn default() -> Self {
        Self::ALL[0]
    }
}
