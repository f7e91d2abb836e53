//! Who holds a claim on a running task: the types are the core's; this host's name is read
//! here.

pub use nightshift_core::records::{Claim, Owner};

/// An owner on this host, for a daemon instance.
pub fn owner_here(instance: impl Into<String>) -> Owner {
    Owner {
        host: this_host(),
        instance: instance.into(),
    }
}

/// This machine's host name (`uname -n`).
pub fn this_host() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
