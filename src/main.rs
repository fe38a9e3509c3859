//! The `runboard` binary. Natively it is the command line; the browser build has its own entry
//! point in `index.html` (see the web issue), so the wasm `main` has nothing to do.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    runboard::cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
