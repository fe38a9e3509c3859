//! The views and the widgets they share: the summary bar, the worker cards and the feed, the
//! Models, Benchmark, Requests and Upstreams views, the log, and the settings and token windows.
//! Each draws the board and says what the user asked for as `Action`s; none touches the network.

pub(crate) mod benchmark_chart;
pub(crate) mod feed_view;
pub(crate) mod format;
pub(crate) mod log_view;
pub(crate) mod settings_view;
pub(crate) mod spec;
pub(crate) mod summary;
pub(crate) mod token_view;

use serde::{Deserialize, Serialize};

pub use spec::{ViewNeeds, ViewSpec};

/// Declares the views once, in tab order, each with the file that gives its `VIEW` (its key,
/// label, needs and drawing): the files' modules, the `View` enum (persisted by name with the
/// console's settings), its list and `View::spec` all come from this table, so a view is its
/// file and one line here.
macro_rules! views {
    ($($(#[$doc:meta])* $variant:ident => $module:ident,)*) => {
        $(pub(crate) mod $module;)*

        /// The views of the main area.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum View {
            $($(#[$doc])* $variant,)*
        }

        impl View {
            /// Every view, in tab order.
            pub const ALL: [Self; [$(stringify!($variant)),*].len()] = [$(Self::$variant),*];

            /// Everything about the view: the `VIEW` its file gives.
            pub const fn spec(self) -> &'static ViewSpec {
                match self {
                    $(Self::$variant => &$module::VIEW,)*
                }
            }
        }
    };
}

views! {
    /// Worker cards and the feed.
    Workers => cards,
    /// The servers' models.
    Models => models_view,
    /// Benchmark progress.
    Benchmark => benchmark_view,
    /// Requests in flight.
    Requests => requests_view,
    /// The model servers' own load (`serve --scrape`).
    Upstreams => upstreams_view,
}

impl Default for View {
    fn default() -> Self {
        Self::ALL[0]
    }
}

impl View {
    /// The tab's label.
    pub const fn label(self) -> &'static str {
        self.spec().label
    }

    /// The view a command-line name stands for.
    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|view| view.spec().key == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_view_has_its_own_key_and_label_in_tab_order() {
        let keys: Vec<&str> = View::ALL.iter().map(|view| view.spec().key).collect();
        assert_eq!(
            keys,
            ["workers", "models", "benchmark", "requests", "upstreams"]
        );
        for view in View::ALL {
            assert_eq!(View::from_key(view.spec().key), Some(view));
            assert!(view.label().eq_ignore_ascii_case(view.spec().key));
        }
        assert_eq!(View::from_key("nope"), None);
        assert_eq!(View::default(), View::Workers);
    }
}
