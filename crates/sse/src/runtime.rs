//! The one thing that differs between native and web for the client: waiting. Natively on
//! tokio's timer, in the browser on the page's. Code elsewhere calls [`sleep`] and needs no `cfg`
//! of its own.

use std::time::Duration;

/// Waits for `duration` on whichever runtime the code runs on.
pub async fn sleep(duration: Duration) {
    #[cfg(not(target_arch = "wasm32"))]
    tokio::time::sleep(duration).await;

    #[cfg(target_arch = "wasm32")]
    {
        // Browser timers take a 32-bit millisecond count; a longer wait is clamped.
        let millis = u32::try_from(duration.as_millis()).unwrap_or(u32::MAX);
        gloo_timers::future::TimeoutFuture::new(millis).await;
    }
}
