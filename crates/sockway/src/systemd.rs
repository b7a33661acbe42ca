//! The service manager's notification protocol (`sd_notify`), for `Type=notify` units: one
//! datagram of `KEY=VALUE` lines per state change, sent to the socket named by
//! `NOTIFY_SOCKET` (a path, or an abstract socket when it starts with `@`).
//!
//! sockway sends `READY=1` once every listener is bound and the startup lines are printed,
//! `RELOADING=1` (with `MONOTONIC_USEC=`, the `CLOCK_MONOTONIC` time it began, which
//! `Type=notify-reload` requires) then `READY=1` around a SIGHUP reload, whether the reload was
//! put in place or refused (`STATUS=` says which), `STOPPING=1` when a shutdown starts, and
//! `WATCHDOG=1` at half the `WatchdogSec=` interval while the runtime is responsive. With no
//! `NOTIFY_SOCKET` (not started by systemd) nothing is sent. A notification that cannot be
//! sent is logged and otherwise ignored: the manager's socket must never take the gateway
//! down.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where notifications go, when the service manager asked for them. Sends never block.
#[derive(Debug)]
pub(crate) struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` asks for, or `None` when it is unset or unusable (which
    /// is logged).
    pub(crate) fn from_environment() -> Option<Notifier> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        let name = name.to_string_lossy();
        match Notifier::connect(&name) {
            Ok(notifier) => Some(notifier),
            Err(error) => {
                tracing::warn!(notify_socket = %name, %error, "NOTIFY_SOCKET is unusable; systemd will not be told of state changes");
                None
            }
        }
    }

    fn connect(name: &str) -> io::Result<Notifier> {
        let address = match name.strip_prefix('@') {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(abstract_name.as_bytes())?
            }
            None if name.starts_with('/') => SocketAddr::from_pathname(name)?,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not an absolute path or an abstract socket name",
                ));
            }
        };
        let socket = UnixDatagram::unbound()?;
        // Notifications are sent from the runtime's threads: a manager that stops reading
        // (its queue full) must cost a dropped notification, never a blocked thread.
        socket.set_nonblocking(true)?;
        Ok(Notifier { socket, address })
    }

    /// Sends one notification of `KEY=VALUE` lines.
    pub(crate) fn notify(&self, state: &str) {
        if let Err(error) = self.socket.send_to_addr(state.as_bytes(), &self.address) {
            tracing::warn!(%error, state, "cannot notify the service manager");
        }
    }
}

/// The notification that a reload begins: `RELOADING=1` and the `CLOCK_MONOTONIC` time in
/// microseconds, by which the manager tells this reload from an earlier one.
pub(crate) fn reloading() -> String {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let micros = u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000
        + u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000;
    format!("RELOADING=1\nMONOTONIC_USEC={micros}")
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when it is set for this process
/// (`WATCHDOG_PID` unset or naming it).
pub(crate) fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_str()?.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
