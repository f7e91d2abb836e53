//! `[store]`: where the queue lives. Without a `url`, the folder store in the home; with one,
//! a PostgreSQL database shared by a fleet of hosts.
//!
//! The URL may carry a password, so it is never shown as written: [`StoreConfig::display_url`]
//! and `Debug` mask it.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use crate::privacy::MASK;
use nightshift_core::duration;

/// The environment variable that overrides `[store] url`.
pub const STORE_URL_ENV: &str = "NIGHTSHIFT_STORE_URL";

/// The shortest lease: renewals must fit in it several times over.
pub const MIN_LEASE: Duration = Duration::from_secs(2);

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// A `postgres://` or `postgresql://` URL, or a libpq `key=value` string. `None`: the
    /// folder store.
    #[serde(serialize_with = "write_masked")]
    pub url: Option<String>,
    /// How long a host's claim on a running task lasts without renewal.
    #[serde(
        deserialize_with = "duration::required",
        serialize_with = "duration::write"
    )]
    pub lease: Duration,
    /// A file whose content (trimmed) is the database password; only its owner may read it.
    pub password_file: Option<PathBuf>,
    /// PEM certificates of the authorities that sign the server's certificate (a private CA,
    /// or the server's own self-signed certificate), trusted instead of the web's.
    pub ca_file: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            lease: Duration::from_secs(30),
            password_file: None,
            ca_file: None,
        }
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.display_url())
            .field("lease", &self.lease)
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

fn write_masked<S: Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(u) => s.serialize_str(&mask_url(u)),
        None => s.serialize_none(),
    }
}

/// What is wrong with `[store]`.
#[derive(Debug, thiserror::Error)]
pub enum StoreConfigError {
    #[error("[store] url: expected a postgres:// or postgresql:// URL or a key=value string")]
    Url,
    #[error("[store] lease must be at least {}", duration::format(MIN_LEASE))]
    Lease,
    #[error("[store] password_file {}: {source}", path.display())]
    ReadPassword {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "[store] password_file {}: other users can read it (mode {mode:o}): run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    PasswordOpen { path: PathBuf, mode: u32 },
    #[error("[store] password_file {}: the file is empty", path.display())]
    PasswordEmpty { path: PathBuf },
}

impl StoreConfig {
    /// The URL as it may be shown: any password replaced by `***`. `None` without a URL.
    pub fn display_url(&self) -> Option<String> {
        self.url.as_deref().map(mask_url)
    }

    /// The password from `password_file`, if one is set. Refuses a file other users can
    /// read, so a database password never sits open on a shared machine.
    pub fn password(&self) -> Result<Option<String>, StoreConfigError> {
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        let read = |source| StoreConfigError::ReadPassword {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(read)?;
        let mode = file.metadata().map_err(read)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StoreConfigError::PasswordOpen {
                path: path.clone(),
                mode,
            });
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(read)?;
        let password = text.trim();
        if password.is_empty() {
            return Err(StoreConfigError::PasswordEmpty { path: path.clone() });
        }
        Ok(Some(password.to_string()))
    }

    /// Applies the environment and checks the values. A relative `password_file` or
    /// `ca_file` is taken from the directory of `config.toml` (`base`).
    pub(super) fn settle(
        &mut self,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), StoreConfigError> {
        if let Some(url) = env(STORE_URL_ENV).filter(|u| !u.trim().is_empty()) {
            self.url = Some(url);
        }
        if let Some(url) = &self.url {
            check_url(url)?;
        }
        if self.lease < MIN_LEASE {
            return Err(StoreConfigError::Lease);
        }
        if let Some(file) = &self.ca_file {
            self.ca_file = Some(base.join(file));
        }
        if let Some(file) = &self.password_file {
            self.password_file = Some(base.join(file));
            // Checked now, with a clear error, when it will be used; the folder store does
            // not need it.
            if self.url.is_some() {
                self.password()?;
            }
        }
        Ok(())
    }
}

/// Checks a store URL the way `[store] url` is checked.
pub fn check_url(url: &str) -> Result<(), StoreConfigError> {
    if looks_like_a_database(url) {
        Ok(())
    } else {
        Err(StoreConfigError::Url)
    }
}

/// `config.toml`'s text with `[store] url` set to `url`, everything else (comments
/// included) kept as written.
pub fn set_url(text: &str, url: &str) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string().trim().to_string())?;
    let Some(store) = doc.get_mut("store") else {
        // Appended as text: toml_edit would put a new table before trailing comments, so
        // above the commented settings of a file `init` wrote, and a top-level setting
        // uncommented there later would fall into `[store]`.
        let sep = if text.is_empty() || text.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        let url = toml_edit::Value::from(url);
        return Ok(format!("{text}{sep}\n[store]\nurl = {url}\n"));
    };
    store
        .as_table_like_mut()
        .ok_or("`store` is not a table")?
        .insert("url", toml_edit::value(url));
    Ok(doc.to_string())
}

fn looks_like_a_database(url: &str) -> bool {
    let url = url.trim();
    url.starts_with("postgres://") || url.starts_with("postgresql://") || url.contains('=')
}

/// `url` with its password masked: `postgres://user:***@host/db`, a `password=` query
/// parameter, or `password=***` in the `key=value` form.
pub fn mask_url(url: &str) -> String {
    // Only a postgres URL is read as one: a key=value string's password may hold `://`.
    let scheme = ["postgres://", "postgresql://"]
        .into_iter()
        .find(|s| url.len() >= s.len() && url[..s.len()].eq_ignore_ascii_case(s));
    match scheme {
        Some(s) => format!("{}{}", &url[..s.len()], mask_url_rest(&url[s.len()..])),
        None => mask_key_values(url),
    }
}

/// The part after `scheme://`: `[user[:password]@]host[/db][?params]`.
fn mask_url_rest(rest: &str) -> String {
    // The user part ends at the last `@` before the query (one in `?user=ns@srv` is not
    // it): a password written with a bare `@` or `/` is still masked whole.
    let authority_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (userinfo, after) = match rest[..authority_end].rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let mut out = String::new();
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, _)) => out.push_str(&format!("{user}:{MASK}@")),
            None => out.push_str(&format!("{userinfo}@")),
        }
    }
    match after.split_once('?') {
        Some((place, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}={MASK}"),
                    _ => p.to_string(),
                })
                .collect();
            out.push_str(&format!("{place}?{}", params.join("&")));
        }
        None => out.push_str(after),
    }
    out
}

/// libpq's `key=value key2='quoted value'` form, with the value of `password` masked.
fn mask_key_values(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim_end();
        let key = key.rsplit(char::is_whitespace).next().unwrap_or(key);
        out.push_str(&rest[..=eq]);
        let after = &rest[eq + 1..];
        let spaces = after.len() - after.trim_start().len();
        out.push_str(&after[..spaces]);
        let value = &after[spaces..];
        let end = value_end(value);
        if key == "password" {
            out.push_str(MASK);
        } else {
            out.push_str(&value[..end]);
        }
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// Where a `key=value` value ends: at the closing quote of a quoted value (`\'` escapes
/// one), else at whitespace.
fn value_end(value: &str) -> usize {
    if let Some(quoted) = value.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => return i + 2,
                _ => {}
            }
        }
        value.len()
    } else {
        value.find(char::is_whitespace).unwrap_or(value.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked() {
        for (url, shown) in [
            (
                "postgres://ns:s3cret@db.example/nightshift",
                "postgres://ns:***@db.example/nightshift",
            ),
            (
                "postgresql://ns:p@ss/w:rd@db:5432/q?sslmode=require",
                "postgresql://ns:***@db:5432/q?sslmode=require",
            ),
            (
                "postgres://db/q?user=ns@srv&password=s3cret",
                "postgres://db/q?user=ns@srv&password=***",
            ),
            (
                "host=db user=ns password=a://b@c",
                "host=db user=ns password=***",
            ),
            (
                "postgres://ns@db/q?sslmode=verify-full&password=s3cret",
                "postgres://ns@db/q?sslmode=verify-full&password=***",
            ),
            ("postgres://db/nightshift", "postgres://db/nightshift"),
            (
                "host=db user=ns password=s3cret dbname=q",
                "host=db user=ns password=*** dbname=q",
            ),
            (
                "host=db password = 'it\\'s a secret' sslmode=require",
                "host=db password = *** sslmode=require",
            ),
            ("host=/tmp/pg dbname=q", "host=/tmp/pg dbname=q"),
        ] {
            let masked = mask_url(url);
            assert_eq!(masked, shown, "{url}");
            assert!(!masked.contains("s3cret") && !masked.contains("secret'"));
        }
    }

    #[test]
    fn setting_the_url_keeps_the_rest_of_the_file() -> Result<(), String> {
        let text = "# mine\nmax_agents = 4 # four\n\n[store]\nlease = \"5s\"\nurl = \"postgres://old/q\"\n\n[attention]\nsilence = \"off\"\n";
        let out = set_url(text, "postgres://new/q")?;
        assert_eq!(out, text.replace("postgres://old/q", "postgres://new/q"));
        let out = set_url("# only comments\n# [store]\n", "host=db dbname=q")?;
        assert_eq!(
            out,
            "# only comments\n# [store]\n\n[store]\nurl = \"host=db dbname=q\"\n"
        );
        assert!(set_url("store = 3\n", "postgres://db/q").is_err());
        assert!(set_url("max_agents = \n", "postgres://db/q").is_err());
        Ok(())
    }

    #[test]
    fn debug_and_serialize_show_only_the_masked_url() -> Result<(), toml::ser::Error> {
        let store = StoreConfig {
            url: Some("postgres://ns:s3cret@db/q".into()),
            ..StoreConfig::default()
        };
        let debug = format!("{store:?}");
        assert!(debug.contains("postgres://ns:***@db/q"), "{debug}");
        assert!(!debug.contains("s3cret"), "{debug}");
        let written = toml::to_string(&store)?;
        assert!(!written.contains("s3cret"), "{written}");
        assert_eq!(
            store.display_url().as_deref(),
            Some("postgres://ns:***@db/q")
        );
        Ok(())
    }

    #[test]
    fn the_password_file_must_be_private_and_is_trimmed() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n")?;
        let store = StoreConfig {
            password_file: Some(file.clone()),
            ..StoreConfig::default()
        };
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640))?;
        let e = store.password().err().map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(
            e.contains("other users can read it") && e.contains("chmod 600"),
            "{e}"
        );
        assert!(!e.contains("s3cret"));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
        assert_eq!(store.password().ok().flatten().as_deref(), Some("s3cret"));
        std::fs::write(&file, " \n")?;
        assert!(matches!(
            store.password(),
            Err(StoreConfigError::PasswordEmpty { .. })
        ));
        Ok(())
    }
}
