//! A private PostgreSQL cluster for tests: `initdb` in a temp dir, a server listening only
//! on a Unix socket in that dir, stopped and removed on drop.
//!
//! [`Cluster::start_partitionable`] also puts the server in a network namespace of its
//! own, listening on TCP 127.0.0.1 there, so a test can cut that namespace's loopback (a
//! network partition for the clients that connect over TCP from inside it) while clients
//! on the Unix socket, which is not namespaced, go on.
//!
//! `initdb` refuses to run as root, so as root the server runs as an unprivileged user
//! (`NIGHTSHIFT_TEST_PG_USER`, default `postgres`, which the OS package creates). The
//! binaries are found from `NIGHTSHIFT_TEST_PG_BIN`, `pg_config --bindir`, the Debian
//! layout (`/usr/lib/postgresql/<version>/bin`), or `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A running private cluster.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Who runs the server, when we are root.
    run_as: Option<String>,
    databases: AtomicU32,
    /// The process that holds the server's network namespace, when it has one.
    netns: Option<std::process::Child>,
}

impl Cluster {
    /// Creates and starts a cluster. Errors say what is missing.
    pub fn start() -> Result<Cluster, String> {
        Self::start_with(None)
    }

    /// Creates and starts a cluster whose server runs in a network namespace of its own
    /// (`unshare -n`), listening on TCP 127.0.0.1:5432 there as well as on its Unix socket.
    /// Clients reach the TCP side with `nsenter -t` [`Cluster::netns_pid`] `-n`; see
    /// [`Cluster::cut_network`]. Needs root, `unshare`, `nsenter`, `ip` and `tc`.
    pub fn start_partitionable() -> Result<Cluster, String> {
        let mut holder = Command::new("unshare")
            .args(["-n", "--", "sleep", "infinity"])
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot make a network namespace with `unshare -n` (util-linux): {e}")
            })?;
        let made = wait_for_netns(holder.id());
        if let Err(e) = made {
            let _ = holder.kill();
            let _ = holder.wait();
            return Err(e);
        }
        let pid = holder.id();
        let up = run(Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-n", "--"])
            .args(["ip", "link", "set", "lo", "up"]));
        if let Err(e) = up {
            let _ = holder.kill();
            let _ = holder.wait();
            return Err(format!(
                "cannot bring up the namespace's loopback (needs root, nsenter and ip): {e}"
            ));
        }
        Self::start_with(Some(holder))
    }

    fn start_with(netns: Option<std::process::Child>) -> Result<Cluster, String> {
        let bin = bin_dir()?;
        let run_as = is_root().then(|| {
            std::env::var("NIGHTSHIFT_TEST_PG_USER").unwrap_or_else(|_| "postgres".into())
        });
        // The server's user must reach its folder: a private TMPDIR (a test's own temp dir,
        // say) would shut it out, so as root the cluster goes in /tmp itself.
        let parent = match run_as {
            Some(_) => PathBuf::from("/tmp"),
            None => std::env::temp_dir(),
        };
        let dir = tempfile::Builder::new()
            .prefix("nightshift-pg-")
            .tempdir_in(&parent)
            .map_err(|e| format!("a temp dir for PostgreSQL in {}: {e}", parent.display()))?;
        let cluster = Cluster {
            dir,
            bin,
            run_as,
            databases: AtomicU32::new(0),
            netns,
        };
        cluster.init()?;
        cluster.pg_ctl(&["start"])?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory the server's socket is in.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn init(&self) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        // The server's user must reach its folders through ours.
        std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", self.dir.path().display()))?;
        for d in [self.data(), self.socket_dir()] {
            std::fs::create_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
            if let Some(user) = &self.run_as {
                run(Command::new("chown").arg(format!("{user}:")).arg(&d))?;
            }
        }
        std::fs::set_permissions(self.data(), std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", self.data().display()))?;
        let data = self.data();
        let mut initdb = self.as_server(&self.bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .arg("--locale=C");
        run(&mut initdb).map(drop)
    }

    /// `pg_ctl` with the cluster's data dir and server options.
    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let listen = if self.netns.is_some() {
            "127.0.0.1"
        } else {
            ""
        };
        let options = format!(
            "-k {} -c listen_addresses='{listen}' -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c shared_buffers=16MB -c max_connections=60 \
             -c dynamic_shared_memory_type=mmap",
            self.socket_dir().display()
        );
        let mut cmd = self.as_server(&self.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.socket_dir().join("server.log"))
            .args(["-w", "-t", "30", "-m", "fast", "-o", &options])
            .args(args);
        run(&mut cmd).map(drop)
    }

    /// `program` as the server's user, in the server's network namespace if it has one.
    fn as_server(&self, program: &Path) -> Command {
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(pid) = self.netns_pid() {
            argv.extend(["nsenter", "-t", &pid.to_string(), "-n", "--"].map(Into::into));
        }
        if let Some(user) = &self.run_as {
            argv.extend(["runuser", "-u", user, "--"].map(Into::into));
        }
        argv.push(program.into());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd
    }

    /// The process whose network namespace the server is in (for `nsenter -t PID -n`),
    /// when it was started with [`Cluster::start_partitionable`].
    pub fn netns_pid(&self) -> Option<u32> {
        self.netns.as_ref().map(std::process::Child::id)
    }

    /// The settings of a [`Cluster::database`] URL, but over TCP 127.0.0.1 in the server's
    /// network namespace (only reachable from inside it).
    pub fn tcp_url(&self, url: &str) -> Result<String, String> {
        self.netns_pid()
            .ok_or("the cluster has no network namespace: use start_partitionable")?;
        let db = url
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("dbname="))
            .ok_or_else(|| format!("no dbname in {url}"))?;
        Ok(format!(
            "host=127.0.0.1 port=5432 user=postgres dbname={db}"
        ))
    }

    /// Cuts the server's network namespace off: its loopback drops every packet (`tc qdisc
    /// add dev lo root pfifo limit 0`), so TCP clients inside it hang as in a partition.
    /// Never the machine's own loopback: a cluster without a namespace refuses.
    pub fn cut_network(&self) -> Result<(), String> {
        self.tc(&["qdisc", "add", "dev", "lo", "root", "pfifo", "limit", "0"])
    }

    /// Ends [`Cluster::cut_network`]'s partition.
    pub fn heal_network(&self) -> Result<(), String> {
        self.tc(&["qdisc", "del", "dev", "lo", "root"])
    }

    fn tc(&self, args: &[&str]) -> Result<(), String> {
        let pid = self
            .netns_pid()
            .ok_or("the cluster has no network namespace of its own; not touching the machine's")?;
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &pid.to_string(), "-n", "--", "tc"])
            .args(args);
        run(&mut cmd)
            .map(drop)
            .map_err(|e| format!("tc in the server's namespace (needs nsenter and tc): {e}"))
    }

    /// Stops the server (`pg_ctl stop -m fast`): clients see their connections closed.
    pub fn stop(&self) -> Result<(), String> {
        self.pg_ctl(&["stop"])
    }

    /// Starts it again after [`Cluster::stop`].
    pub fn start_again(&self) -> Result<(), String> {
        self.pg_ctl(&["start"])
    }

    /// Restarts the server (`pg_ctl restart -m fast`): clients lose their connections and
    /// the server's start time moves.
    pub fn restart(&self) -> Result<(), String> {
        self.pg_ctl(&["restart"])
    }

    /// Connection settings for `database` (libpq key=value form).
    pub fn url(&self, database: &str) -> String {
        format!(
            "host={} user=postgres dbname={database}",
            self.socket_dir().display()
        )
    }

    /// A new empty database, for one test or one fleet. Returns its connection settings.
    pub fn database(&self) -> Result<String, String> {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{n}");
        let mut psql = Command::new(self.bin.join("psql"));
        psql.arg("-h")
            .arg(self.socket_dir())
            .args(["-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1"])
            .args(["-c", &format!("CREATE DATABASE {name}")]);
        run(&mut psql)?;
        Ok(self.url(&name))
    }

    /// Runs one SQL statement with `psql` on the database `url` names (as [`Cluster::database`]
    /// gave it) and returns its unaligned output: for tests that look at the rows.
    pub fn query(&self, url: &str, sql: &str) -> Result<String, String> {
        let mut psql = Command::new(self.bin.join("psql"));
        psql.arg(url)
            .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", sql]);
        run(&mut psql).map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// A new database with nightshift's schema, and the options to reach it with `lease`.
    pub async fn migrated(&self, lease: std::time::Duration) -> Result<crate::PgOptions, String> {
        let options = crate::PgOptions {
            url: self.database()?,
            password_file: None,
            password: None,
            lease,
            ca_file: None,
        };
        crate::PgStore::migrate(&options)
            .await
            .map_err(|e| format!("migrating: {e}\n{}", self.log()))?;
        Ok(options)
    }

    /// The server's log so far, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.socket_dir().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut cmd = self.as_server(&self.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.data())
            .args(["-w", "-m", "immediate", "stop"]);
        let _ = cmd.output();
        if let Some(mut holder) = self.netns.take() {
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

/// Waits until `pid` (an `unshare -n` child) is in a network namespace other than ours.
fn wait_for_netns(pid: u32) -> Result<(), String> {
    let ours =
        std::fs::read_link("/proc/self/ns/net").map_err(|e| format!("/proc/self/ns/net: {e}"))?;
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(5) {
        match std::fs::read_link(format!("/proc/{pid}/ns/net")) {
            Ok(theirs) if theirs != ours => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("`unshare -n` did not start (needs root): {e}")),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err("`unshare -n` did not make a network namespace within 5 s (needs root)".into())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Where PostgreSQL's server programs are.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("NIGHTSHIFT_TEST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let has_initdb = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_initdb(&dir) {
            return Ok(dir);
        }
    }
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|d| has_initdb(d))
                .collect()
        })
        .unwrap_or_default();
    debian.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(dir) = debian.pop() {
        return Ok(dir);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|d| has_initdb(d))
        .ok_or_else(|| {
            "PostgreSQL's server programs (initdb, pg_ctl) are not installed: install the \
             `postgresql` package (`.ci/run` does) or set NIGHTSHIFT_TEST_PG_BIN"
                .to_string()
        })
}
