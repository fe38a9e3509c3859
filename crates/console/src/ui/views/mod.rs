//! The views and the widgets they share: the summary bar, the worker cards and the feed, the
//! Models, Benchmark, Requests and Upstreams views, the log, and the settings and token windows.
//! Each draws the board and says what the user asked for as `Action`s; none touches the network.

pub(crate) mod benchmark_chart;
pub(crate) mod benchmark_view;
pub(crate) mod cards;
pub(crate) mod feed_view;
pub(crate) mod format;
pub(crate) mod log_view;
pub(crate) mod models_view;
pub(crate) mod requests_view;
pub(crate) mod settings_view;
pub(crate) mod spec;
pub(crate) mod summary;
pub(crate) mod token_view;
pub(crate) mod upstreams_view;

pub use spec::{ViewNeeds, ViewSpec};

use crate::ui::View;

impl View {
    /// Everything about the view: the `VIEW` its file gives.
    pub const fn spec(self) -> &'static ViewSpec {
        match self {
            Self::Workers => &cards::VIEW,
            Self::Models => &models_view::VIEW,
            Self::Benchmark => &benchmark_view::VIEW,
            Self::Requests => &requests_view::VIEW,
            Self::Upstreams => &upstreams_view::VIEW,
        }
    }

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
