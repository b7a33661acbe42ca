//! What the proxies in front of the gateway say about a client, and when to believe it.
//!
//! Behind a load balancer every connection comes from the balancer's address. The balancer can
//! name the client in two ways: at the TCP level, a PROXY protocol header before anything else
//! on the connection ([`protocol`]: read by `server` on `gateway.listen` when
//! `gateway.proxy_protocol` is on), or in HTTP, `X-Forwarded-For` with `X-Forwarded-Proto` and
//! `X-Forwarded-Port` ([`forwarded`]: read by the upgrade in `connection`). Either is believed
//! only from a peer in `gateway.trusted_proxies`; from any other peer a PROXY header closes the
//! connection and forwarding headers are passed on to the backend but name nobody.
//!
//! The address found this way is the client's everywhere: `identity.sourceIp`, the per-client
//! connection cap and rate, the access log and the CONNECT event's `X-Forwarded-For`. This
//! module is a leaf: it knows bytes, headers and the configured proxies, not the gateway's
//! state.

pub(crate) mod forwarded;
pub(crate) mod protocol;
