//! The listeners both Guardrail binaries share. A hostile or broken peer must not hold
//! a connection, a file descriptor or a core: accept errors (EMFILE) back off and are
//! logged at a bounded rate; connections beyond a limit are shed; a request head must
//! arrive within a header timeout counted from its first byte, and an idle keep-alive
//! connection is closed after an idle timeout; request heads are bounded in size;
//! in-flight requests beyond a limit get 503 with `Retry-After`.

mod accept;
mod in_flight;
mod limits;
mod metrics;
mod serve;
mod timeouts;

pub use accept::{Accepted, Conn, Listener};
pub use in_flight::{HoldPermit, InFlight};
pub use limits::Limits;
pub use metrics::ListenerMetrics;
pub use serve::{builder, overloaded, serve, shed};
