//! The `runboard` binary. Natively it is the command line; built for the browser
//! (`scripts/build-web.sh`, see `index.html`), it starts the console on the page.

// Many small allocations per event on several threads: mimalloc keeps them from queueing on
// one allocator lock (measured in `cargo bench --bench server`).
#[cfg(not(target_arch = "wasm32"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(target_arch = "wasm32"))]
mod cli;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {
    runboard_console::web::start();
}
