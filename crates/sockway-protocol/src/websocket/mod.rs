//! The WebSocket protocol as the server speaks it, without I/O: RFC 6455 framing and
//! RFC 7692 permessage-deflate.
//!
//! * [`frame`]: frame headers, masking;
//! * [`reader`]: bytes from a client into messages, with every check RFC 6455 asks of a
//!   server and the size limits;
//! * [`deflate`]: permessage-deflate negotiation and per-message (de)compression with
//!   bounded memory per connection.
//!
//! The gateway drives these over its sockets; keeping them free of I/O lets the fuzzer and
//! the unit tests feed them any byte sequence, split at any point.

pub mod deflate;
pub mod frame;
pub mod reader;
