//! The `runboard` binary. Natively it is the command line; the browser build has its own entry
//! point in `index.html` (see the web issue), so the wasm `main` has nothing to do.

// Many small allocations per event on several threads: mimalloc keeps them from queueing on
// one allocator lock (measured in `cargo bench --bench server`).
#[cfg(not(target_arch = "wasm32"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    runboard::cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
