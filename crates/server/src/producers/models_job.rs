//! The models job (`params.job = "models"`): which models a server can run, for people (narration
//! with a table) and for programs (one `model_list` data event), then the `done` marker older
//! clients wait for. On the synthetic generator that is its catalog; with upstreams, their model
//! lists read again, each unreachable one reported with its error.

use runboard_api::{DataAction, ModelList, RunEvent};

use crate::producers::catalog;
use crate::producers::generator::{self, GeneratorConfig, Stop};
use crate::producers::run_context::{Outcome, RunContext};
use crate::producers::upstream::{self, UpstreamPool};

/// A models job: narration for people (a table among it), the list as one `data` event for
/// programs, then the `done` marker older clients wait for. With upstreams, their model lists
/// are read again first and each unreachable one is reported with its error.
pub async fn list_models(
    config: &GeneratorConfig,
    ctx: &RunContext,
    upstreams: Option<&UpstreamPool>,
) -> Outcome {
    let steps = async {
        let list = match upstreams {
            None => {
                let start = "Listing models on the synthetic generator";
                ctx.narrate("info", "model_list_start", start).await?;
                generator::pause(config, ctx, 0.2).await?;
                ModelList {
                    models: catalog::models(),
                    upstreams: Vec::new(),
                }
            }
            Some(pool) => {
                let start = "Reading the model lists of the upstreams";
                ctx.narrate("info", "model_list_start", start).await?;
                tokio::select! {
                    () = pool.refresh() => {}
                    () = ctx.cancel.cancelled() => return Err(Stop::Cancelled),
                    () = ctx.shutdown.cancelled() => return Err(Stop::Interrupted),
                }
                let (models, upstreams) = pool.models();
                for upstream in &upstreams {
                    if let Some(error) = &upstream.error {
                        let text = format!(
                            "upstream {} ({}) is unreachable: {error}",
                            upstream.name, upstream.url
                        );
                        ctx.narrate("error", "model_list_unreachable", &text)
                            .await?;
                    } else {
                        let text = format!(
                            "upstream {} ({}) is reachable: {} model(s)",
                            upstream.name, upstream.url, upstream.models
                        );
                        ctx.narrate("info", "model_list_upstream", &text).await?;
                    }
                }
                ModelList { models, upstreams }
            }
        };
        let found = format!("Found {} model(s)", list.models.len());
        ctx.narrate("info", "model_list_found", &found).await?;
        let table = if upstreams.is_some() {
            upstream::models_table(&list.models)
        } else {
            catalog::table(&list.models)
        };
        ctx.narrate("info", "model_list_table", &table).await?;
        ctx.data(DataAction::ModelList(list)).await?;
        ctx.narrate("info", "model_list_done", "Model list complete")
            .await?;
        ctx.record(RunEvent::Done {
            run_id: String::new(),
        })
        .await?;
        Ok::<_, Stop>(())
    };
    match steps.await {
        Ok(()) => Outcome::Completed,
        Err(Stop::Cancelled) => Outcome::Cancelled,
        Err(Stop::Interrupted) => Outcome::Interrupted,
    }
}
