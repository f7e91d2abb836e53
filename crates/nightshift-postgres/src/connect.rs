//! From a store URL to a pool of connections: the password from a file or the environment
//! (never from task files), TLS as the URL's `sslmode` asks, and time limits that notice a
//! dead network rather than wait on it.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::Host;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::PgError;

/// How to reach the store.
#[derive(Clone)]
pub struct PgOptions {
    /// A `postgres://` URL or a libpq `key=value` string.
    pub url: String,
    /// A file whose content is the password (it wins over one in the URL).
    pub password_file: Option<PathBuf>,
    /// The password from the environment (`NIGHTSHIFT_STORE_PASSWORD`), when set.
    pub password: Option<String>,
    /// How long a claim lasts without renewal, on the database's clock.
    pub lease: Duration,
    /// PEM certificates of the authorities to trust for TLS instead of the web's (a private
    /// CA, or a self-signed server).
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &"…")
            .field("password_file", &self.password_file)
            .field("lease", &self.lease)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// A connection's parts, ready for the pool and for the listener's own connection.
pub(crate) struct Target {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: MakeRustlsConnect,
    /// Where it is, for messages: hosts, port and database, never the password.
    pub(crate) shown: String,
}

/// How long making a connection may take before the store counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn target(options: &PgOptions) -> Result<Target, PgError> {
    let mut config = tokio_postgres::Config::from_str(&options.url)
        .map_err(|e| PgError::BadUrl(crate::error::describe(&e)))?;
    if let Some(path) = &options.password_file {
        config.password(read_password_file(path)?);
    } else if let Some(password) = &options.password {
        config.password(password.as_str());
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("nightshift");
    }
    // A partition must end a connection, not hang it: keepalives on an idle one, and a
    // limit on unacknowledged data for a busy one.
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(10));
    let shown = shown(&config);
    let tls = tls(options.ca_file.as_deref())?;
    Ok(Target { config, tls, shown })
}

pub(crate) fn pool(target: &Target) -> Pool {
    pool_of(target, 4, CONNECT_TIMEOUT)
}

/// A pool of `size` connections whose waits last at most `wait`.
pub(crate) fn pool_of(target: &Target, size: usize, wait: Duration) -> Pool {
    let manager = Manager::from_config(
        target.config.clone(),
        target.tls.clone(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    // Builds without a connection; fails only on a missing runtime, which is given.
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(wait))
        .create_timeout(Some(wait))
        .recycle_timeout(Some(wait))
        .build()
        .unwrap_or_else(|_| unreachable_pool(target))
}

/// Never reached in practice (the builder fails only without a runtime, and one is set);
/// kept so no `expect` sits on the path.
fn unreachable_pool(target: &Target) -> Pool {
    let manager = Manager::new(target.config.clone(), target.tls.clone());
    match Pool::builder(manager).build() {
        Ok(pool) => pool,
        Err(e) => {
            tracing::error!("cannot build a connection pool: {e}");
            std::process::abort()
        }
    }
}

/// The password file's first line. It must be private: a password readable by others is
/// not a secret.
fn read_password_file(path: &std::path::Path) -> Result<String, PgError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |reason: String| PgError::PasswordFile {
        path: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(fail(format!(
            "readable by other users (mode {:o}): run `chmod 600 {}`",
            meta.permissions().mode() & 0o777,
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

/// TLS for `sslmode=require` (and `prefer`): the server's certificate is verified against
/// the authorities in `ca_file`, or else the web's root authorities.
fn tls(ca_file: Option<&std::path::Path>) -> Result<MakeRustlsConnect, PgError> {
    let roots = match ca_file {
        Some(path) => private_roots(path)?,
        None => rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    };
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::BadUrl(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The certificates in a PEM file, as the only authorities to trust.
fn private_roots(path: &std::path::Path) -> Result<rustls::RootCertStore, PgError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let fail = |reason: String| PgError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| fail(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| fail(e.to_string()))?;
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("no PEM certificate in it".into()));
    }
    Ok(roots)
}

/// `user@host:port/db`, for messages.
fn shown(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config
        .get_ports()
        .first()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    format!(
        "{}@{}{port}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(ca_file: Option<PathBuf>) -> PgOptions {
        PgOptions {
            url: "host=db user=ns dbname=nightshift sslmode=require".into(),
            password_file: None,
            password: None,
            lease: Duration::from_secs(30),
            ca_file,
        }
    }

    #[test]
    fn a_private_ca_file_is_read_and_a_bad_one_named() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (cert, key) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
        // A real self-signed certificate, made by the system's openssl.
        let made = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=db"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()?;
        assert!(made.status.success(), "{made:?}");
        assert!(target(&options(Some(cert))).is_ok());
        let missing = dir.path().join("missing.pem");
        match target(&options(Some(missing))) {
            Err(PgError::CaFile { path, .. }) => assert!(path.ends_with("missing.pem")),
            other => panic!("{:?}", other.err()),
        }
        // A key is not a certificate.
        match target(&options(Some(key))) {
            Err(e @ PgError::CaFile { .. }) => {
                assert!(e.to_string().contains("no PEM certificate"), "{e}");
            }
            other => panic!("{:?}", other.err()),
        }
        Ok(())
    }
}
