//! `runboard` with no subcommand: the console window, with an embedded server unless `--api`
//! names servers to watch.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use runboard_console::eframe::{self, egui};
use runboard_console::network::Spawner;
use runboard_console::ui::{Console, ConsoleConfig, View};
use runboard_server::{self as server, DbLocation, RunningServer, ServerConfig};

/// The colour theme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Theme {
    /// Follow the system setting
    System,
    /// Dark
    Dark,
    /// Light
    Light,
}

/// `--view`: the views' names, as the console's view registry gives them (so a new view is
/// accepted here with nothing to add).
fn view_parser() -> impl clap::builder::TypedValueParser<Value = View> {
    let names = View::ALL.map(|view| {
        let spec = view.spec();
        clap::builder::PossibleValue::new(spec.key).help(spec.about)
    });
    clap::builder::TypedValueParser::map(
        clap::builder::PossibleValuesParser::new(names),
        |name: String| View::from_key(&name).unwrap_or_default(),
    )
}

/// Arguments of the console window.
#[derive(Debug, Clone, Args)]
pub struct GuiArgs {
    /// Watch this runs API instead of starting the embedded server (repeatable)
    #[arg(long = "api", value_name = "URL")]
    apis: Vec<String>,
    /// Bearer token for the servers
    #[arg(long, env = "RUNBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Launch a demo batch at once
    #[arg(long)]
    demo: bool,
    /// Render the window, save it as a PNG after --after seconds, and exit
    #[arg(long, value_name = "PATH")]
    screenshot: Option<PathBuf>,
    /// Seconds to wait before --screenshot; with --replay, the recording's second to show
    /// (the same picture every time)
    #[arg(long, value_name = "SECS", default_value_t = 3.0,
          value_parser = super::seconds::secs_from_zero)]
    after: f64,
    /// Open the console on this recording (`runboard record`): the embedded server replays its
    /// runs, details and events at their recorded pace (not with --api)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["apis", "demo"])]
    replay: Option<PathBuf>,
    /// With --replay: start again after the end
    #[arg(long = "loop", requires = "replay")]
    looping: bool,
    /// Window size, `WIDTHxHEIGHT`
    #[arg(long, value_name = "WxH", default_value = "1440x900", value_parser = parse_size)]
    size: [f32; 2],
    /// Colour theme
    #[arg(long, value_enum, default_value_t = Theme::System)]
    theme: Theme,
    /// Seconds between polls of the run list for the feed
    #[arg(long, value_name = "SECS", default_value_t = 8.0, value_parser = poll_secs)]
    feed_poll_secs: f64,
    /// The view to open on
    #[arg(long, value_parser = view_parser(), default_value = "workers")]
    view: View,
    /// Run the embedded server's synthetic clock, or the --replay, this many times faster
    #[arg(long, default_value_t = 1.0, value_parser = positive_speed)]
    speed: f64,
    /// Have the embedded server read this model server's own metrics, as `serve --scrape`
    /// (repeatable; not with --api)
    #[arg(long = "scrape", value_name = "URL", value_parser = runboard_server::scrape::check_url)]
    scrape: Vec<String>,
    /// Have the embedded server generate runs on this OpenAI-compatible model server, as
    /// `serve --upstream` (repeatable; not with --api)
    #[arg(long = "upstream", value_name = "[NAME=]URL",
          value_parser = runboard_server::upstream::spec::check_upstream)]
    upstreams: Vec<String>,
    /// Let the embedded server's runs name MODEL as ALIAS, as `serve --model-alias`
    #[arg(long = "model-alias", value_name = "ALIAS=MODEL",
          value_parser = runboard_server::upstream::spec::parse_alias)]
    model_aliases: Vec<(String, String)>,
}

fn positive_speed(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(speed) if speed.is_finite() && speed > 0.0 && speed <= 1000.0 => Ok(speed),
        _ => Err(format!(
            "expected a speed above 0 and at most 1000, not {text:?}"
        )),
    }
}

fn poll_secs(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if (0.2..=3600.0).contains(&secs) => Ok(secs),
        _ => Err(format!("expected seconds from 0.2 to 3600, not {text:?}")),
    }
}

fn parse_size(text: &str) -> Result<[f32; 2], String> {
    let (w, h) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected WIDTHxHEIGHT, not {text:?}"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<f32>()
            .ok()
            .filter(|v| (200.0..=8000.0).contains(v))
            .ok_or_else(|| format!("expected WIDTHxHEIGHT between 200 and 8000, not {text:?}"))
    };
    Ok([parse(w)?, parse(h)?])
}

/// The embedded server's settings: a free loopback port, the user's database, or for a demo a
/// database in memory, so demo runs never land among the user's own runs nor show as
/// "interrupted" at the next start when the window closes mid-run.
fn embedded_server(
    demo: bool,
    speed: f64,
    scrape: Vec<String>,
    upstreams: runboard_server::UpstreamConfig,
) -> ServerConfig {
    let mut config = ServerConfig {
        addr: "127.0.0.1:0"
            .parse()
            .unwrap_or(ServerConfig::default().addr),
        ..ServerConfig::default()
    };
    config.generator.speed = speed;
    config.scrape.urls = scrape;
    config.upstreams = upstreams;
    if demo {
        config.store.db = DbLocation::Memory;
    }
    config
}

/// Opens the console and runs it until the window closes.
pub fn run(args: GuiArgs) -> ExitCode {
    let spawner = match Spawner::start_background() {
        Ok(spawner) => spawner,
        Err(error) => return fail(&format!("could not start the async runtime: {error}")),
    };
    let (window, embedded) = match prepare(args, &spawner) {
        Ok(prepared) => prepared,
        Err(error) => return fail(&error),
    };
    let result = window.open(spawner.clone());
    if let Some(running) = embedded {
        spawner.handle().block_on(running.stop());
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&format!(
            "the window could not open: {error} (is there a display? set DISPLAY, or run \
             under Xvfb)"
        )),
    }
}

/// The console's window, ready to open.
struct Window {
    config: ConsoleConfig,
    size: [f32; 2],
    theme: Theme,
    /// Save this picture after `after` and close, instead of staying open.
    screenshot: Option<PathBuf>,
    after: Duration,
}

/// Checks the flags that go together, starts the embedded server when no `--api` is given, and
/// sets up the window.
fn prepare(args: GuiArgs, spawner: &Spawner) -> Result<(Window, Option<RunningServer>), String> {
    let GuiArgs {
        apis,
        token,
        demo,
        screenshot,
        after,
        size,
        theme,
        feed_poll_secs,
        view,
        speed,
        scrape,
        upstreams,
        model_aliases,
        replay,
        looping,
    } = args;
    if !apis.is_empty() && (!scrape.is_empty() || !upstreams.is_empty()) {
        return Err(
            "--scrape and --upstream are for the embedded server; give them to `runboard serve` \
             of the --api server"
                .to_owned(),
        );
    }
    if replay.is_some() && (!scrape.is_empty() || !upstreams.is_empty()) {
        return Err("a --replay plays a recording; it takes no --scrape or --upstream".to_owned());
    }
    let (replay_view, replay_config) = replay_setup(
        replay.as_deref(),
        screenshot.is_some(),
        after,
        speed,
        looping,
    )?;
    let upstreams = super::serve::upstream_config(&upstreams, &model_aliases)?;
    let mut servers = apis;
    let mut embedded: Option<RunningServer> = None;
    if servers.is_empty() {
        let mut config = embedded_server(demo || replay_config.is_some(), speed, scrape, upstreams);
        config.replay = replay_config;
        let running = spawner
            .handle()
            .block_on(server::start(config))
            .map_err(|error| format!("the embedded server did not start: {error}"))?;
        tracing::info!("embedded server on {}", running.url());
        servers.push(running.url());
        embedded = Some(running);
    }
    let mut config = ConsoleConfig::new(servers);
    config.token = token;
    config.demo = demo;
    config.feed_poll = Duration::from_secs_f64(feed_poll_secs);
    config.view = Some(view);
    config.replay = replay_view;
    let window = Window {
        config,
        size,
        theme,
        screenshot,
        after: Duration::from_secs_f64(after.max(0.0)),
    };
    Ok((window, embedded))
}

impl Window {
    /// Opens the window and runs the console in it until it closes.
    fn open(self, spawner: Spawner) -> eframe::Result<()> {
        let Self {
            config,
            size,
            theme,
            screenshot,
            after,
        } = self;
        let options = native_options(size, screenshot.is_some());
        eframe::run_native(
            "runboard",
            options,
            Box::new(move |cc| {
                cc.egui_ctx.set_theme(match theme {
                    Theme::System => egui::ThemePreference::System,
                    Theme::Dark => egui::ThemePreference::Dark,
                    Theme::Light => egui::ThemePreference::Light,
                });
                let storage = if screenshot.is_some() {
                    None
                } else {
                    cc.storage
                };
                let console = Console::new(&cc.egui_ctx, storage, config, spawner);
                Ok(match screenshot {
                    Some(path) => {
                        Box::new(runboard_console::ui::Screenshot::new(console, path, after))
                    }
                    None => Box::new(console),
                })
            }),
        )
    }
}

/// The window: its size and title; for a screenshot, nothing remembered from earlier starts.
fn native_options(size: [f32; 2], screenshot: bool) -> eframe::NativeOptions {
    eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("runboard")
            .with_inner_size(size)
            .with_min_inner_size([640.0, 420.0]),
        // A screenshot must show the requested size, not a remembered one.
        persist_window: !screenshot,
        // Nor anything else remembered (panel sizes, the log's state): it starts from a store
        // that does not exist, so two screenshots start alike on any machine.
        persistence_path: screenshot.then(|| {
            std::env::temp_dir()
                .join(format!("runboard-screenshot-{}", std::process::id()))
                .join("nothing-remembered.ron")
        }),
        // The window's renderer (the console's Cargo.toml says why glow); named here because a
        // test build also has wgpu, for the UI snapshots, and would otherwise pick it.
        renderer: eframe::Renderer::Glow,
        ..eframe::NativeOptions::default()
    }
}

/// With `--replay`: the console's view of the replay and the embedded server's settings. A
/// screenshot of a replay steps the recording's clock itself, so it shows the same second the
/// same way every time; otherwise the recording plays in real time (× `--speed`).
fn replay_setup(
    replay: Option<&std::path::Path>,
    screenshot: bool,
    after: f64,
    speed: f64,
    looping: bool,
) -> Result<
    (
        Option<runboard_console::ui::ReplayView>,
        Option<runboard_server::replay::ReplayConfig>,
    ),
    String,
> {
    let Some(path) = replay else {
        return Ok((None, None));
    };
    let view = runboard_console::ui::ReplayView {
        clock: if screenshot {
            runboard_api::ReplayClock::stepped()
        } else {
            runboard_api::ReplayClock::real_time(speed)
        },
        stop_at: if screenshot {
            after.max(0.0)
        } else {
            f64::INFINITY
        },
        label: format!("replay of {}", file_name(path)),
    };
    let config = super::replay::config(path, view.clock.clone(), looping)?;
    Ok((Some(view), Some(config)))
}

/// A file's name without its directories, for people.
fn file_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

fn fail(message: &str) -> ExitCode {
    eprintln!("runboard: error: {message}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::embedded_server;
    use runboard_server::DbLocation;

    #[test]
    fn a_demo_keeps_its_runs_in_memory_and_a_plain_start_uses_the_users_database() {
        let demo = embedded_server(
            true,
            3.0,
            Vec::new(),
            runboard_server::UpstreamConfig::none(),
        );
        assert_eq!(demo.store.db, DbLocation::Memory);
        assert!(demo.addr.ip().is_loopback());
        assert_eq!(demo.addr.port(), 0);
        assert!((demo.generator.speed - 3.0).abs() < f64::EPSILON);
        assert_eq!(
            embedded_server(
                false,
                1.0,
                Vec::new(),
                runboard_server::UpstreamConfig::none()
            )
            .store
            .db,
            DbLocation::default_file()
        );
    }
}
