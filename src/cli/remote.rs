//! What every command that talks to a server shares: `--api`, `--token`, and errors that say
//! what to do.

use clap::Args;

use runboard_api::{ApiClient, ApiError, ErrorCode};

/// The default server: the reference server's default address.
pub const DEFAULT_API: &str = "http://127.0.0.1:9010";

/// `--api URL` and `--token TOKEN`, with environment fallbacks.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// The runs API to talk to
    #[arg(long, env = "RUNBOARD_API", default_value = DEFAULT_API, value_name = "URL")]
    pub api: String,
    /// Bearer token for a server started with --token
    #[arg(long, env = "RUNBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl RemoteArgs {
    /// A client for the server, or the one-line error to print.
    pub fn client(&self) -> Result<ApiClient, String> {
        ApiClient::new(&self.api, self.token.as_deref()).map_err(|error| explain(&error))
    }
}

/// An API error as one line that says what to do about it.
pub fn explain(error: &ApiError) -> String {
    let hint = match error {
        ApiError::Transport { .. } => {
            " (is a server running there? start one with `runboard serve`, or point --api / \
             RUNBOARD_API at one)"
        }
        ApiError::Status { status: 401, .. } => {
            " (this server needs a token: pass --token or set RUNBOARD_TOKEN)"
        }
        ApiError::Status {
            status: 404, code, ..
        } if *code == ErrorCode::NotFound => " (`runboard runs` lists the runs this server has)",
        ApiError::InvalidUrl { .. } => " (--api takes a URL such as http://127.0.0.1:9010)",
        _ => "",
    };
    format!("{error}{hint}")
}
