//! The control socket: accepting connections, pushing updates to subscribers, and
//! answering requests (`status`, `cancel`).

use std::time::Duration;

use jiff::Timestamp;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use super::{Daemon, IpcCall};
use crate::ipc::{self, DaemonStatus, Request, Response, RunStatus};
use crate::run::{self, RunDir};
use nightshift_core::Event;
use nightshift_store::Store;

/// Pushes `Changed` to a subscriber until it hangs up. Pushes coalesce: a slow reader gets
/// the latest `seq`, not a backlog.
async fn subscribe(mut conn: ipc::Connection, mut updates: tokio::sync::watch::Receiver<u64>) {
    let ok = Response::Ok {
        message: "subscribed".into(),
    };
    if ipc::send(&mut conn, &ok).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() {
                    return;
                }
                let seq = *updates.borrow_and_update();
                if ipc::send(&mut conn, &Response::Changed { seq }).await.is_err() {
                    return;
                }
            }
            // Anything from the subscriber, or its hang-up, ends the subscription.
            _ = ipc::receive::<Request>(&mut conn) => return,
        }
    }
}

pub(super) async fn accept(
    listener: UnixListener,
    calls: mpsc::Sender<IpcCall>,
    updates: tokio::sync::watch::Receiver<u64>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("control socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !ipc::peer_is_same_user(&stream) {
            tracing::warn!("refused a control connection from another user");
            continue;
        }
        let calls = calls.clone();
        let updates = updates.clone();
        tokio::spawn(async move {
            let mut conn = ipc::frame(stream);
            loop {
                let req = match ipc::receive::<Request>(&mut conn).await {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => {
                        let _ = ipc::send(
                            &mut conn,
                            &Response::Error {
                                message: e.to_string(),
                            },
                        )
                        .await;
                        break;
                    }
                };
                if req == Request::Subscribe {
                    subscribe(conn, updates).await;
                    break;
                }
                let (tx, rx) = oneshot::channel();
                if calls.send((req, tx)).await.is_err() {
                    break;
                }
                let Ok(response) = rx.await else { break };
                if ipc::send(&mut conn, &response).await.is_err() {
                    break;
                }
            }
        });
    }
}

impl<S: Store> Daemon<S> {
    pub(super) async fn on_request(&mut self, req: Request) -> Response {
        match req {
            Request::Status => Response::Status(self.status()),
            // Served by the connection itself (see `subscribe`).
            Request::Subscribe => Response::Error {
                message: "subscribe is answered by the connection".into(),
            },
            Request::ResumeLimited { profile } => {
                let held: Vec<String> = self
                    .state
                    .limit_holds()
                    .keys()
                    .filter(|p| profile.as_ref().is_none_or(|want| want == *p))
                    .cloned()
                    .collect();
                let default = &self.state.settings().default_agent;
                let limited = self
                    .state
                    .running()
                    .filter(|r| r.limited.is_some())
                    .filter(|r| {
                        let agent = r.task.agent.as_ref().unwrap_or(default);
                        profile.as_ref().is_none_or(|want| want == agent)
                    })
                    .count();
                if held.is_empty() && limited == 0 {
                    return Response::Error {
                        message: match profile {
                            Some(p) => format!("agent `{p}` is not held for a limit"),
                            None => "no agent is held for a limit".into(),
                        },
                    };
                }
                self.step(Event::ResumeLimited { profile }).await;
                Response::Ok {
                    message: if held.is_empty() {
                        "the limited agents continue".into()
                    } else {
                        format!(
                            "lifted the hold on {}; its agents continue",
                            held.join(", ")
                        )
                    },
                }
            }
            Request::Cancel { id } => {
                let Some(run) = self.state.run(&id) else {
                    return Response::Error {
                        message: format!("task `{id}` is not running"),
                    };
                };
                let dir = RunDir::new(self.home.run_dir(&id, run.attempt));
                if let Err(e) = dir.write(
                    run::CANCEL,
                    &run::CancelRecord {
                        at: Timestamp::now(),
                    },
                ) {
                    tracing::warn!(task = id, "cannot record the cancel: {e}");
                }
                self.step(Event::Cancel { id: id.clone() }).await;
                Response::Ok {
                    message: format!("cancelled {id}"),
                }
            }
        }
    }

    fn status(&self) -> DaemonStatus {
        DaemonStatus {
            protocol: ipc::PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            started_at: self.started_at,
            max_agents: self.config.max_agents,
            slots_used: self.state.slots_used(),
            queued: self.state.queued_len(),
            paused: self.state.paused(),
            disk_full: self.state.disk_full().map(str::to_string),
            running: self
                .state
                .running()
                .map(|r| RunStatus {
                    id: r.task.id.clone(),
                    attempt: r.attempt,
                    phase: r.phase,
                    session: r.session.clone(),
                    started_at: self.wall_of(r.started_at),
                    deadline: r.deadline.map(|d| self.wall_of(d)),
                })
                .collect(),
        }
    }
}
