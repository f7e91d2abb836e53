//! A task's `repo:`: which git URLs are taken, how they are shown, and the name of their
//! mirror in the home. Pure: nothing here runs git.
//!
//! Taken: `https://`, `http://`, `ssh://`, `git://` and `file://` URLs, scp-like
//! `user@host:path`, and absolute paths. Refused: anything starting with `-` (git would read
//! it as an option), `<transport>::<address>` (remote helpers; `ext::` runs a command), and
//! other schemes.

use crate::session::stable_hash;

/// The URL schemes a `repo:` may use.
const SCHEMES: [&str; 5] = ["https", "http", "ssh", "git", "file"];

/// Why a `repo:` value is refused.
pub fn validate(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err("expected a git URL or the absolute path of a repository".into());
    }
    if url.starts_with('-') {
        return Err("must not start with `-` (git would read it as an option)".into());
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters".into());
    }
    if let Some((transport, _)) = url.split_once("::")
        && !transport.contains('/')
    {
        return Err(format!(
            "the `{transport}::` transport is refused: remote helpers can run commands"
        ));
    }
    if url.starts_with('/') {
        return Ok(());
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        if !SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "the `{scheme}://` scheme is not supported (use {})",
                SCHEMES.map(|s| format!("{s}://")).join(", ")
            ));
        }
        let host = rest.split('/').next().unwrap_or_default();
        if scheme != "file" && host_part(host).is_empty() {
            return Err(format!("`{}` names no host", mask(url)));
        }
        return Ok(());
    }
    if let Some((host, path)) = scp_like(url) {
        if host_part(host).is_empty() || path.is_empty() {
            return Err(format!("`{}` needs a host and a path", mask(url)));
        }
        return Ok(());
    }
    Err(format!(
        "`{}` is neither a URL (https://, ssh://, git@host:path, file://) nor an absolute path",
        mask(url)
    ))
}

/// The host a git URL names, lowercased, without user or port (`None` for a path).
pub fn host_of(url: &str) -> Option<String> {
    let authority = if let Some((_, rest)) = url.split_once("://") {
        rest.split('/').next().unwrap_or_default()
    } else if url.starts_with('/') {
        return None;
    } else {
        scp_like(url)?.0
    };
    let host = host_part(authority);
    let host = host.split(':').next().unwrap_or(host);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// `[user@]host:path` as git reads it: a colon before any slash.
fn scp_like(url: &str) -> Option<(&str, &str)> {
    let (host, path) = url.split_once(':')?;
    (!host.contains('/')).then_some((host, path))
}

/// The host of an authority, without the user part.
fn host_part(authority: &str) -> &str {
    authority.rsplit_once('@').map_or(authority, |(_, h)| h)
}

/// The URL fit to show: a password becomes `***`, and so does an http(s) user name given
/// alone, which is how tokens are usually passed (`https://TOKEN@host/…`).
pub fn mask(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((user_info, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let user = match user_info.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None if scheme.to_ascii_lowercase().starts_with("http") => "***".to_string(),
        None => user_info.to_string(),
    };
    format!("{scheme}://{user}@{host}{path}")
}

/// Replaces the secrets of `url` (its password, or an http(s) token) wherever they appear
/// in `text`: git's own messages may quote the URL.
pub fn mask_in(text: &str, url: &str) -> String {
    let masked = mask(url);
    if masked == url {
        return text.to_string();
    }
    let mut out = text.replace(url, &masked);
    if let Some(secret) = secret(url)
        && !secret.is_empty()
    {
        out = out.replace(secret, "***");
    }
    out
}

/// The part of a URL that [`mask`] hides.
fn secret(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let (user_info, _) = authority.rsplit_once('@')?;
    match user_info.split_once(':') {
        Some((_, password)) => Some(password),
        None if scheme.to_ascii_lowercase().starts_with("http") => Some(user_info),
        None => None,
    }
}

/// The folder name of the repository's mirror: its last path part (without `.git`), made
/// safe, and a hash of the masked URL, so two repositories named `app` do not collide and a
/// changed token does not make a second mirror.
pub fn mirror_name(url: &str) -> String {
    let masked = mask(url);
    let trimmed = masked.trim_end_matches('/');
    let last = trimmed
        .rsplit(['/', ':'])
        .next()
        .unwrap_or_default()
        .trim_end_matches(".git");
    let name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = name.trim_start_matches('.');
    let name = if name.is_empty() { "repo" } else { name };
    let hash = stable_hash(masked.as_bytes());
    format!("{name}-{:08x}.git", hash >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_urls_and_absolute_paths_are_taken() {
        for url in [
            "https://github.com/org/app.git",
            "http://host:8080/app",
            "ssh://git@host:22/org/app.git",
            "git://host/app.git",
            "file:///srv/git/app.git",
            "git@github.com:org/app.git",
            "host:app.git",
            "/srv/git/app.git",
            "https://user:secret@host/app.git",
        ] {
            assert_eq!(validate(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn option_injection_and_command_transports_are_refused() {
        let refused = [
            ("-uhttps://x/y", "must not start with `-`"),
            ("--upload-pack=touch /tmp/x", "must not start with `-`"),
            ("ext::sh -c touch% /tmp/pwned", "spaces"),
            ("ext::sh%20-c%20id", "`ext::` transport is refused"),
            ("fd::7", "`fd::` transport is refused"),
            ("ftp://host/app", "`ftp://` scheme is not supported"),
            ("relative/path", "neither a URL"),
            ("", "expected a git URL"),
            ("https:///app", "names no host"),
            ("https://host/a\nb", "control characters"),
            ("git@host:", "needs a host and a path"),
        ];
        for (url, why) in refused {
            match validate(url) {
                Err(m) => assert!(m.contains(why), "{url}: {m}"),
                Ok(()) => panic!("{url} was taken"),
            }
        }
    }

    #[test]
    fn credentials_are_masked() {
        assert_eq!(
            mask("https://user:s3cret@host/org/app.git"),
            "https://user:***@host/org/app.git"
        );
        assert_eq!(
            mask("https://ghp_token@github.com/org/app.git"),
            "https://***@github.com/org/app.git"
        );
        assert_eq!(
            mask("ssh://git@host/org/app.git"),
            "ssh://git@host/org/app.git"
        );
        assert_eq!(mask("git@host:org/app.git"), "git@host:org/app.git");
        assert_eq!(mask("/srv/app.git"), "/srv/app.git");
        // An `@` in the path is not a user.
        assert_eq!(mask("https://host/a@b"), "https://host/a@b");
        let url = "https://user:s3cret@host/app.git";
        let text = format!("fatal: unable to access '{url}/': auth failed for s3cret");
        let shown = mask_in(&text, url);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("https://user:***@host/app.git"), "{shown}");
    }

    #[test]
    fn mirror_names_are_readable_distinct_and_ignore_credentials() {
        let a = mirror_name("https://host/org/app.git");
        assert!(a.starts_with("app-") && a.ends_with(".git"), "{a}");
        assert_ne!(a, mirror_name("https://other/org/app.git"));
        assert_eq!(
            mirror_name("https://u:one@host/org/app.git"),
            mirror_name("https://u:two@host/org/app.git")
        );
        assert!(mirror_name("git@host:app.git").starts_with("app-"));
        assert!(mirror_name("/srv/git/app.git/").starts_with("app-"));
        assert!(mirror_name("host:..").starts_with("repo-"));
        assert!(!mirror_name("https://host/a b").contains(' '));
    }
}
