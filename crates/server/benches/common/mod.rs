//! What the benchmarks share: CPU time by thread, percentiles and medians, runtimes with named
//! threads (so one runtime's CPU can be told from another's in one process), an events
//! subscriber and the scripted upstreams' wire.

#![allow(dead_code)]

pub mod subscriber;
pub mod upstream_wire;

/// CPU seconds (user + system) of this process's threads whose name starts with a prefix.
pub fn threads_cpu_secs(prefixes: &[&str]) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !prefixes.iter().any(|prefix| comm.starts_with(prefix)) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let Some(after) = stat.rfind(')').map(|at| &stat[at + 2..]) else {
            continue;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        for index in [11, 12] {
            ticks += fields
                .get(index)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let secs = ticks as f64 / 100.0;
    secs
}

/// The value at `fraction` (0 to 1) of sorted values, nearest rank; 0 when there are none.
pub fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len().saturating_sub(1)) as f64 * fraction).round() as usize;
    sorted.get(index).copied().unwrap_or(0)
}

/// The value at `fraction` of sorted microseconds, in milliseconds.
pub fn percentile_ms(sorted: &[u64], fraction: f64) -> f64 {
    #[allow(clippy::cast_precision_loss)] // Microseconds far below 2^52.
    let ms = percentile(sorted, fraction) as f64 / 1000.0;
    ms
}

/// The median of some figures (the upper one of an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A multi-threaded runtime whose threads are named `name`.
pub fn runtime(name: &str, threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}
