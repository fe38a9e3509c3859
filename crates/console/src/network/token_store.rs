//! Where a token typed into the console is kept: the browser's local storage (so a page reload
//! does not ask again). Natively nothing is written to disk; `--token`/`RUNBOARD_TOKEN` is the way.

/// The local-storage key.
#[cfg(target_arch = "wasm32")]
const KEY: &str = "runboard-token";

/// The token kept from an earlier visit, if any.
pub fn load() -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    {
        let storage = web_sys::window()?.local_storage().ok()??;
        storage
            .get_item(KEY)
            .ok()?
            .filter(|token| !token.is_empty())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        None
    }
}

/// Keeps a token for the next visit (an empty one forgets it).
pub fn remember(token: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        let storage = web_sys::window().and_then(|w| w.local_storage().ok().flatten());
        if let Some(storage) = storage {
            let _ = if token.is_empty() {
                storage.remove_item(KEY)
            } else {
                storage.set_item(KEY, token)
            };
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    let _ = token;
}
