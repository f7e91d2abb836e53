//! A private PostgreSQL cluster for tests: `initdb` in a temp dir, a server listening only
//! on a Unix socket in that dir, stopped and removed on drop.
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
}

impl Cluster {
    /// Creates and starts a cluster. Errors say what is missing.
    pub fn start() -> Result<Cluster, String> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("nightshift-pg-")
            .tempdir()
            .map_err(|e| format!("a temp dir for PostgreSQL: {e}"))?;
        let run_as = is_root().then(|| {
            std::env::var("NIGHTSHIFT_TEST_PG_USER").unwrap_or_else(|_| "postgres".into())
        });
        let cluster = Cluster {
            dir,
            bin,
            run_as,
            databases: AtomicU32::new(0),
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
        let options = format!(
            "-k {} -c listen_addresses='' -c fsync=off -c synchronous_commit=off \
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

    fn as_server(&self, program: &Path) -> Command {
        match &self.run_as {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    /// Stops the server (`pg_ctl stop -m fast`): clients see their connections closed.
    pub fn stop(&self) -> Result<(), String> {
        self.pg_ctl(&["stop"])
    }

    /// Starts it again after [`Cluster::stop`].
    pub fn start_again(&self) -> Result<(), String> {
        self.pg_ctl(&["start"])
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
    }
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
