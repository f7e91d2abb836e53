//! Usage limits and rate limits: an agent that hits one holds new starts of its profile
//! (other profiles go on), waits out the reset, then is told to continue.
//!
//! Pure, like the rest of `core`: [`recognise`] reads what the agent printed; [`Holds`]
//! keeps each profile's hold over an injected clock.

mod holds;
mod recognise;

pub use holds::{Held, Hold, Holds, LimitSettings};
pub(crate) use recognise::patterns;
pub use recognise::{LimitKind, LimitSeen, recognise, reset_time};
