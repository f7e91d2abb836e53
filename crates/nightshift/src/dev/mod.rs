//! Dev tooling, not part of the product: `nightshift bench`, `nightshift demo`, the sandbox
//! (a throwaway home with its own daemon and tmux server) they run in, and the scriptable
//! `nightshift test-agent` that stands in for a real agent in the tests, the demo and the
//! bench. A folder of the binary, not a crate of its own: these tools drive the binary's
//! library (the daemon, the CLI's task actions), so a crate would make a package cycle.

pub mod bench;
pub mod demo;
pub mod sandbox;
pub mod testagent;
