//! The one task that owns a [`Balanced`](super::Balanced) channel's
//! endpoints, and the resolver that feeds it. Everything that changes the
//! endpoints arrives here as an [`Event`]; after each change the owner
//! publishes a new [`Picker`] for calls to pick from.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use tokio::{
    sync::{Notify, mpsc, watch},
    time::Instant,
};

use super::{
    BalanceConfig, Event, Target, Task,
    endpoint::{self, Endpoint, EndpointState},
    picker::Picker,
};

/// Resolves `target` at once, then every `refresh`, and when asked (at
/// most once per `min_refresh`), sending each answer to the owner.
pub(super) async fn resolve(
    target: Target,
    config: BalanceConfig,
    events: mpsc::UnboundedSender<Event>,
    resolve_now: Arc<Notify>,
) {
    loop {
        let resolved_at = Instant::now();
        if events
            .send(Event::Resolved(target.resolve().await))
            .is_err()
        {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(config.refresh) => {}
            () = resolve_now.notified() => {
                tokio::time::sleep_until(resolved_at + config.min_refresh).await;
            }
        }
    }
}

/// The one task that owns a [`Balanced`] channel's endpoints.
pub(super) struct Owner {
    pub(super) config: BalanceConfig,
    /// Handed to each endpoint's health task.
    pub(super) events: mpsc::UnboundedSender<Event>,
    pub(super) endpoints: HashMap<SocketAddr, Owned>,
    pub(super) resolved: bool,
    pub(super) next_id: u64,
    pub(super) picker: watch::Sender<Arc<Picker>>,
    pub(super) resolve_now: Arc<Notify>,
    /// Held so the resolver stops with the owner.
    pub(super) _resolver: Task,
}

/// An endpoint, its state, and its health task.
pub(super) struct Owned {
    endpoint: Arc<Endpoint>,
    state: EndpointState,
    watcher: Option<Task>,
}

impl Owner {
    pub(super) async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Event>) {
        while let Some(event) = inbox.recv().await {
            let changed = match event {
                Event::Resolved(Ok(addrs)) => self.apply(&addrs),
                Event::Resolved(Err(e)) => {
                    tracing::warn!(upstream = %self.config.name, error = %e, "resolution failed; keeping the last addresses");
                    !std::mem::replace(&mut self.resolved, true)
                }
                Event::Health(id, state) => self.set_state(id, state, true),
                Event::CallFailed(id) => {
                    self.resolve_now.notify_one();
                    self.set_state(id, EndpointState::NotReady, false)
                }
                Event::ResolveNow => {
                    self.resolve_now.notify_one();
                    false
                }
                #[cfg(test)]
                Event::Pretend(addr, state) => match self.endpoints.get_mut(&addr) {
                    Some(owned) => {
                        owned.watcher = None;
                        owned.state = state;
                        true
                    }
                    None => false,
                },
            };
            if changed {
                let all = self
                    .endpoints
                    .values()
                    .map(|o| (o.endpoint.clone(), o.state))
                    .collect();
                self.picker
                    .send_replace(Arc::new(Picker::new(all, self.resolved)));
            }
        }
    }

    /// Adds new addresses, drops vanished ones. Whether anything changed.
    fn apply(&mut self, addrs: &[SocketAddr]) -> bool {
        let before = self.endpoints.len();
        self.endpoints.retain(|addr, _| addrs.contains(addr));
        let removed = before - self.endpoints.len();
        let mut added = 0;
        for addr in addrs {
            if self.endpoints.contains_key(addr) {
                continue;
            }
            self.next_id += 1;
            let Some(endpoint) = Endpoint::new(self.next_id, *addr, &self.config) else {
                continue;
            };
            let endpoint = Arc::new(endpoint);
            let watcher = Task(tokio::spawn(endpoint::watch_health(
                endpoint.clone(),
                self.config.health_service.clone(),
                self.events.clone(),
            )));
            self.endpoints.insert(
                *addr,
                Owned {
                    endpoint,
                    state: EndpointState::Connecting,
                    watcher: Some(watcher),
                },
            );
            added += 1;
        }
        if added + removed > 0 {
            tracing::info!(
                upstream = %self.config.name,
                added,
                removed,
                total = addrs.len(),
                "upstream addresses resolved"
            );
        }
        let first = !std::mem::replace(&mut self.resolved, true);
        added + removed > 0 || first
    }

    /// Sets endpoint `id`'s state, as its health task reported (ignored
    /// once that task is stopped) or a call found. Whether it changed.
    fn set_state(&mut self, id: u64, state: EndpointState, from_health: bool) -> bool {
        let Some(owned) = self
            .endpoints
            .values_mut()
            .find(|o| o.endpoint.id == id && (o.watcher.is_some() || !from_health))
        else {
            return false;
        };
        if std::mem::replace(&mut owned.state, state) == state {
            return false;
        }
        tracing::info!(
            upstream = %self.config.name,
            addr = %owned.endpoint.addr,
            state = state.as_str(),
            "upstream endpoint changed"
        );
        true
    }
}
