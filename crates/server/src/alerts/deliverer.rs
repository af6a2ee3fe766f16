//! The deliverer: sends due notifications from the outbox, with retries
//! and backoff, and counts what happened.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sealtrail_alert::notify;
use sealtrail_alert::outbox::{self, Backoff, Deliverer, Status};
use sealtrail_alert::store;
use sealtrail_meta::alerts::SEND_TIMEOUT;
use tokio::sync::watch;

use super::now_ms;
use crate::app::App;
use crate::config::Alerts;

/// The retry policy the configuration asks for.
fn backoff(config: &Alerts) -> Backoff {
    Backoff {
        base: Duration::from_millis(config.retry_base_ms),
        factor: 2.0,
        max_delay: Duration::from_millis(config.retry_max_ms),
        max_attempts: config.max_attempts,
    }
}

/// Send due notifications every `alerts.interval_ms` until `stop` turns
/// true. The only deliverer of this data directory: the CLI never sends
/// from the outbox.
pub fn spawn_deliverer(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let http = match notify::http_client(SEND_TIMEOUT, app.config.alerts.destinations()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("alerts: no HTTP client, notifications stay queued: {e}");
                return;
            }
        };
        let interval = Duration::from_millis(app.config.alerts.interval_ms);
        let policy = backoff(&app.config.alerts);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let channels = match store::list_channels(&app.meta.lock(), || app.meta.secrets()) {
                Ok(all) => all
                    .into_iter()
                    .map(|c| (c.spec.name.clone(), c.spec))
                    .collect::<HashMap<_, _>>(),
                Err(e) => {
                    tracing::warn!("alerts: reading channels: {e}");
                    continue;
                }
            };
            let mut deliverer = Deliverer::new(app.meta.connection(), &http);
            deliverer.backoff = policy;
            match deliverer
                .deliver_due(now_ms, |name| channels.get(name).cloned(), outbox::random_jitter)
                .await
            {
                Ok(done) => {
                    for d in done {
                        metrics::counter!("sealtrail_notifications_total", "channel" => d.channel.clone(), "status" => d.status.as_str())
                            .increment(1);
                        if d.error.as_deref().is_some_and(|e| e.starts_with(notify::REFUSED)) {
                            metrics::counter!("sealtrail_notification_destinations_refused_total", "via" => "outbox")
                                .increment(1);
                        }
                        if d.status == Status::Dead {
                            tracing::warn!(
                                "alerts: notification {} to {} is a dead letter: {}",
                                d.id,
                                d.channel,
                                d.error.as_deref().unwrap_or("")
                            );
                        }
                    }
                }
                Err(e) => tracing::warn!("alerts: delivering notifications: {e}"),
            }
        }
    });
}
