//! The control socket's wire: length-delimited JSON frames over a Unix socket in the private
//! runtime directory, and the messages on it. Only the user who runs the daemon may connect.
//! The daemon serves it (`daemon/`); the CLI and the dashboard talk to it through
//! `client/`.

use std::io;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::net::UnixStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use nightshift_core::Phase;

pub const PROTOCOL_VERSION: u32 = 1;
const MAX_FRAME: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// What the daemon is doing.
    Status,
    /// Stop a running task and file it as failed.
    Cancel { id: String },
    /// Lift the hold of one agent profile (or of all) for a usage or rate limit now.
    ResumeLimited { profile: Option<String> },
    /// Keep the connection: the daemon answers `Ok`, then sends `Changed` whenever its state
    /// may have changed (for live views; they read what they show from the files).
    Subscribe,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Status(DaemonStatus),
    Ok {
        message: String,
    },
    Error {
        message: String,
    },
    /// Something changed (pushed to subscribers); `seq` grows with each change.
    Changed {
        seq: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DaemonStatus {
    pub protocol: u32,
    pub version: String,
    pub pid: u32,
    pub started_at: Timestamp,
    pub max_agents: usize,
    pub slots_used: usize,
    pub queued: usize,
    pub running: Vec<RunStatus>,
    /// The queue is paused: nothing new starts.
    #[serde(default)]
    pub paused: bool,
    /// The queue is held because the home's disk is full: what failed.
    #[serde(default)]
    pub disk_full: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunStatus {
    pub id: String,
    pub attempt: u32,
    pub phase: Phase,
    pub session: String,
    pub started_at: Timestamp,
    pub deadline: Option<Timestamp>,
}

#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error("the nightshift daemon is not running (start it with `nightshift daemon`)")]
    NotRunning,
    #[error("talking to the daemon: {0}")]
    Io(#[from] io::Error),
    #[error("the daemon sent something unreadable: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("the daemon closed the connection without answering")]
    Closed,
    #[error("the daemon is not answering (no answer within {0:?}; is it stopped?)")]
    NotAnswering(Duration),
}

pub type Connection = Framed<UnixStream, LengthDelimitedCodec>;

pub fn frame(stream: UnixStream) -> Connection {
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec();
    Framed::new(stream, codec)
}

pub async fn send<T: Serialize>(conn: &mut Connection, msg: &T) -> Result<(), IpcError> {
    let bytes = serde_json::to_vec(msg)?;
    conn.send(tokio_util::bytes::Bytes::from(bytes)).await?;
    Ok(())
}

pub async fn receive<T: for<'de> Deserialize<'de>>(
    conn: &mut Connection,
) -> Result<Option<T>, IpcError> {
    match conn.next().await {
        None => Ok(None),
        Some(frame) => Ok(Some(serde_json::from_slice(&frame?)?)),
    }
}

/// Whether the connecting process belongs to the same user. The socket lives in a 0700
/// directory already; this also covers systems that ignore socket permissions.
pub fn peer_is_same_user(stream: &UnixStream) -> bool {
    match stream.peer_cred() {
        Ok(cred) => cred.uid() == rustix::process::getuid().as_raw(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json() -> Result<(), serde_json::Error> {
        let json = serde_json::to_string(&Request::Cancel { id: "a".into() })?;
        assert_eq!(json, r#"{"type":"cancel","id":"a"}"#);
        let back: Request = serde_json::from_str(&json)?;
        assert_eq!(back, Request::Cancel { id: "a".into() });
        Ok(())
    }
}
