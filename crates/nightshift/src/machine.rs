//! This machine's identity, as distinct from its host name (which a cloned image or a
//! mistyped `NIGHTSHIFT_HOST` can share with another machine).

/// The systemd/D-Bus machine id where there is one (Linux), else the kernel's host name.
pub fn id() -> String {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| {
            let id = std::fs::read_to_string(p).ok()?;
            let id = id.trim();
            (!id.is_empty()).then(|| id.to_string())
        })
        .unwrap_or_else(nightshift_store::this_host)
}
