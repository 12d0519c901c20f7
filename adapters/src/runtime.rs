//! The worker runtime's loop: the maintenance pass of [`opsrun_application::worker`] on a
//! timer. What a pass does (and what one job attempt does) is the application's policy; this
//! module only schedules it.

use std::future::Future;

use std::sync::Arc;

use opsrun_application::families::Families;
use opsrun_application::ports::Retention;
use opsrun_application::worker::{RuntimeSettings, maintain};
use opsrun_application::{OperationRunService, ServiceError};

/// Runs [`maintain`] every `settings.maintenance_every` until `shutdown` resolves. Failures
/// are reported through `on_error` and the loop goes on (the next pass retries).
pub async fn maintenance_loop<F, E>(
    service: OperationRunService,
    families: Families,
    retention: Arc<dyn Retention>,
    settings: RuntimeSettings,
    shutdown: F,
    mut on_error: E,
) where
    F: Future<Output = ()>,
    E: FnMut(ServiceError),
{
    let mut tick = tokio::time::interval(settings.maintenance_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = tick.tick() => {
                if let Err(error) = maintain(&service, &families, retention.as_ref(), settings).await {
                    on_error(error);
                }
            }
        }
    }
}
