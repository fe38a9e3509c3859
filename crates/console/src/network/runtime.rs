//! Where the console's background work runs, natively and on the web: natively on a tokio
//! runtime on a named background thread, in the browser on the page's event loop with
//! `spawn_local`. Code elsewhere calls [`Spawner::spawn`] and needs no `cfg` of its own.

use std::future::Future;

/// `Send` natively, where tasks move between the runtime's threads; nothing in the browser,
/// where everything runs on the page's one thread. Lets one signature serve both.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send> MaybeSend for T {}

/// `Send` natively, where tasks move between the runtime's threads; nothing in the browser,
/// where everything runs on the page's one thread. Lets one signature serve both.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T> MaybeSend for T {}

/// Where background work runs: a handle to the tokio runtime natively, nothing on the web.
#[derive(Debug, Clone)]
pub struct Spawner {
    #[cfg(not(target_arch = "wasm32"))]
    handle: tokio::runtime::Handle,
}

impl Spawner {
    /// Uses an existing tokio runtime.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(handle: tokio::runtime::Handle) -> Self {
        Self { handle }
    }

    /// Starts a multi-threaded tokio runtime on a named background thread that lives as long as
    /// the process, and returns a spawner for it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn start_background() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("runboard-io")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("runboard-runtime".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        Ok(Self { handle })
    }

    /// A spawner for the page's event loop.
    #[cfg(target_arch = "wasm32")]
    pub fn new() -> Self {
        Self {}
    }

    /// Runs a future in the background.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn spawn(&self, future: impl Future<Output = ()> + MaybeSend + 'static) {
        self.handle.spawn(future);
    }

    /// Runs a future in the background.
    #[cfg(target_arch = "wasm32")]
    pub fn spawn(&self, future: impl Future<Output = ()> + MaybeSend + 'static) {
        wasm_bindgen_futures::spawn_local(future);
    }

    /// The tokio handle, for code that needs the runtime itself (the embedded server).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

#[cfg(target_arch = "wasm32")]
impl Default for Spawner {
    fn default() -> Self {
        Self::new()
    }
}
