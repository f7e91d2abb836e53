//! The user's side of nightshift, shared by the CLI (`cli/`) and the dashboard
//! (`dashboard/`): talking to the daemon over its socket (one request and its answer, or a
//! subscription to its changes, each within [`ANSWER_TIMEOUT`]), and the actions a person
//! takes on tasks ([`tasks`], [`enqueue`]). The CLI prints what these return; the dashboard
//! shows it. Neither imports the other.

pub mod enqueue;
pub mod hint;
pub mod tasks;

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::net::UnixStream;

use crate::config::Config;
use crate::home::Home;
use crate::ipc::{self, Connection, DaemonStatus, IpcError, Request, Response};

pub use enqueue::{Overrides, enqueue};
pub use tasks::{
    ack_task, cancel_task, remote_attach, retry_task, running_session, runs_elsewhere, send_text,
    set_paused,
};

/// How long any client (a command, the dashboard) waits for the daemon, connecting
/// included. Its answers come from memory (status, or a cancel that only records the
/// request), so a daemon that takes longer is stopped or stuck: say so instead of hanging.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects to the daemon; a socket nobody listens on means it is not running.
async fn connect(socket: &Path) -> Result<Connection, IpcError> {
    let stream = match UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(IpcError::NotRunning);
        }
        Err(e) => return Err(e.into()),
    };
    Ok(ipc::frame(stream))
}

/// `exchange` within [`ANSWER_TIMEOUT`].
async fn answered<T>(exchange: impl Future<Output = Result<T, IpcError>>) -> Result<T, IpcError> {
    tokio::time::timeout(ANSWER_TIMEOUT, exchange)
        .await
        .map_err(|_| IpcError::NotAnswering(ANSWER_TIMEOUT))?
}

/// Sends one request and waits for its answer.
pub async fn request(socket: &Path, req: &Request) -> Result<Response, IpcError> {
    answered(async {
        let mut conn = connect(socket).await?;
        ipc::send(&mut conn, req).await?;
        ipc::receive::<Response>(&mut conn)
            .await?
            .ok_or(IpcError::Closed)
    })
    .await
}

/// A live connection on which the daemon pushes `Changed` at each change.
pub struct Subscription(Connection);

impl Subscription {
    /// Waits for the daemon's next change; `false` once the daemon has gone (closed the
    /// connection, or sent something unreadable).
    pub async fn changed(&mut self) -> bool {
        matches!(ipc::receive::<Response>(&mut self.0).await, Ok(Some(_)))
    }
}

/// Opens a subscription: after this, the daemon sends `Changed` at each change.
pub async fn subscribe(socket: &Path) -> Result<Subscription, IpcError> {
    answered(async {
        let mut conn = connect(socket).await?;
        ipc::send(&mut conn, &Request::Subscribe).await?;
        match ipc::receive::<Response>(&mut conn).await? {
            Some(Response::Ok { .. }) => Ok(Subscription(conn)),
            Some(_) => Err(IpcError::Io(io::Error::other(
                "the daemon does not support subscriptions",
            ))),
            None => Err(IpcError::Closed),
        }
    })
    .await
}

/// The daemon's status: `Ok(None)` when it is not running, `Err` when it is there but
/// does not answer properly (so that is never mistaken for "not running").
pub async fn status(home: &Home) -> Result<Option<DaemonStatus>, String> {
    let socket = home.checked_socket().map_err(|e| e.to_string())?;
    match request(&socket, &Request::Status).await {
        Ok(Response::Status(s)) => Ok(Some(s)),
        Ok(other) => Err(format!("unexpected answer: {other:?}")),
        Err(IpcError::NotRunning) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// [`status`], for code outside a runtime.
pub fn daemon_status(home: &Home) -> Result<Option<DaemonStatus>, String> {
    let rt = runtime().map_err(|e| e.to_string())?;
    rt.block_on(status(home))
}

/// The runtime a command (or the dashboard) uses for its async edges: the socket, tmux, git.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

pub fn load_config(home: &Home) -> anyhow::Result<Config> {
    Ok(Config::load(&home.config_file())?)
}
