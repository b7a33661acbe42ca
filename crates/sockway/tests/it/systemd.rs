//! `Type=notify`: started with `NOTIFY_SOCKET`, the binary tells the service manager when it is
//! ready (after its listeners are bound), reloading (around SIGHUP, which reloads the
//! configuration: `RELOADING=1` with `MONOTONIC_USEC=`, then `READY=1` whether the reload was
//! put in place or refused), alive (`WATCHDOG=1` at half `WATCHDOG_USEC`) and stopping (on
//! SIGTERM), in that order; the test plays the manager.

use std::os::linux::net::SocketAddrExt;
use std::path::Path;

use sockway_testkit::{ConfigFile, DEADLINE};
use tokio::net::UnixDatagram;
use tokio::process::Child;

const CONFIG: &str = "[routes.\"$default\"]\nintegration = \"answer\"\nroute_response = true\n\n\
                      [integrations.answer]\ntype = \"mock\"\nstatus_code = 200\nbody = \"one\"\n";

/// The service manager's end: notifications as they arrive.
struct Manager {
    socket: UnixDatagram,
}

impl Manager {
    /// The next notification, with `WATCHDOG=1` pings counted into `pings` and skipped.
    async fn next(&self, pings: &mut usize) -> String {
        let mut buffer = vec![0u8; 4096];
        loop {
            let length = tokio::time::timeout(DEADLINE, self.socket.recv(&mut buffer))
                .await
                .expect("a notification within the deadline")
                .expect("receive a notification");
            let message = String::from_utf8(buffer[..length].to_vec()).expect("UTF-8");
            if message == "WATCHDOG=1" {
                *pings += 1;
                continue;
            }
            return message;
        }
    }
}

/// Starts `sockway serve` with `NOTIFY_SOCKET=notify_socket` and a 200 ms watchdog.
async fn start(config: &ConfigFile, notify_socket: &str) -> (Child, String) {
    crate::serve(config, |command| {
        command
            .args(["--log-level", "warn"])
            .env("NOTIFY_SOCKET", notify_socket)
            .env("WATCHDOG_USEC", "200000")
            .env_remove("WATCHDOG_PID");
    })
    .await
}

/// `CLOCK_MONOTONIC` now, in microseconds, as `MONOTONIC_USEC=` counts it.
fn monotonic_usec() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(now.tv_sec).unwrap() * 1_000_000 + u64::try_from(now.tv_nsec).unwrap() / 1_000
}

/// Sends SIGHUP and checks the `RELOADING=1` that follows: its `MONOTONIC_USEC=` lies between
/// the signal and the notification.
async fn hang_up(child: &Child, manager: &Manager, pings: &mut usize) {
    let before = monotonic_usec();
    crate::signal(child, "HUP").await;
    let reloading = manager.next(pings).await;
    let after = monotonic_usec();
    let usec: u64 = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("{reloading:?}"))
        .parse()
        .unwrap();
    assert!(
        before <= usec && usec <= after,
        "{before} <= {usec} <= {after}"
    );
}

/// READY with the serving URL and the main pid, a watchdog ping, RELOADING then READY around
/// SIGHUP (a rewritten file put in place for the open connection, then a broken one refused),
/// STOPPING on SIGTERM, and a clean exit.
async fn lifecycle(manager: Manager, notify_socket: &str, name: &str) {
    let config = ConfigFile::new(name, CONFIG);
    let (mut child, url) = start(&config, notify_socket).await;
    let pid = child.id().expect("running");
    let mut pings = 0;

    let ready = manager.next(&mut pings).await;
    assert_eq!(
        ready,
        format!("READY=1\nSTATUS=serving on {url}\nMAINPID={pid}")
    );
    // Ready means bound: a client gets in at once.
    let mut client = sockway_testkit::connect(&url)
        .await
        .expect("the listener is bound when READY=1 arrives");
    client.send_text("hello").await;
    assert_eq!(client.next_text().await, "one");

    // Pings arrive at half the interval whatever else happens; wait for one by receiving.
    let mut buffer = [0u8; 64];
    while pings == 0 {
        let length = tokio::time::timeout(DEADLINE, manager.socket.recv(&mut buffer))
            .await
            .expect("a watchdog ping within the deadline")
            .unwrap();
        assert_eq!(&buffer[..length], b"WATCHDOG=1");
        pings += 1;
    }

    std::fs::write(&config.path, CONFIG.replace("\"one\"", "\"two\"")).unwrap();
    hang_up(&child, &manager, &mut pings).await;
    assert_eq!(
        manager.next(&mut pings).await,
        format!("READY=1\nSTATUS=serving on {url}; configuration reloaded")
    );
    client.send_text("hello").await;
    assert_eq!(client.next_text().await, "two", "the open connection stays");

    std::fs::write(
        &config.path,
        "[routes.\"$default\"]\nintegration = \"nowhere\"\n",
    )
    .unwrap();
    hang_up(&child, &manager, &mut pings).await;
    assert_eq!(
        manager.next(&mut pings).await,
        format!("READY=1\nSTATUS=serving on {url}; the last reload was refused (see the log)")
    );
    client.send_text("hello").await;
    assert_eq!(
        client.next_text().await,
        "two",
        "the running configuration stays"
    );

    crate::signal(&child, "TERM").await;
    assert_eq!(manager.next(&mut pings).await, "STOPPING=1");
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn notifies_a_path_socket_in_order() {
    let directory = ConfigFile::new("notify-socket", "");
    let path = directory.path.with_file_name("notify.sock");
    let manager = Manager {
        socket: UnixDatagram::bind(&path).unwrap(),
    };
    lifecycle(manager, path.to_str().unwrap(), "notify-path").await;
}

#[tokio::test]
async fn notifies_an_abstract_socket() {
    let name = format!("sockway-test-notify-{}", std::process::id());
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = std::os::unix::net::UnixDatagram::bind_addr(&address).unwrap();
    socket.set_nonblocking(true).unwrap();
    let manager = Manager {
        socket: UnixDatagram::from_std(socket).unwrap(),
    };
    lifecycle(manager, &format!("@{name}"), "notify-abstract").await;
}

#[tokio::test]
async fn an_unusable_notify_socket_does_not_stop_the_gateway() {
    let config = ConfigFile::new("notify-unusable", CONFIG);
    let (child, url) = start(&config, "relative/path.sock").await;
    let socket = sockway_testkit::connect(&url)
        .await
        .expect("serving without a service manager");
    drop(socket);
    drop(child);
}

/// The unit file as shipped, with `ExecStart` pointed at this build's binary.
fn unit_file(directory: &ConfigFile) -> std::path::PathBuf {
    let shipped =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/systemd/sockway.service");
    let text = std::fs::read_to_string(&shipped).expect("packaging/systemd/sockway.service");
    for directive in [
        "Type=notify",
        "ExecReload=/usr/local/bin/sockway validate --config /etc/sockway/sockway.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "LimitNOFILE=",
        "WatchdogSec=",
    ] {
        assert!(
            text.lines().any(|line| line.starts_with(directive)),
            "the unit sets {directive}"
        );
    }
    let unit = directory.path.with_file_name("sockway.service");
    let local = text.replace("/usr/local/bin/sockway", crate::binary().to_str().unwrap());
    std::fs::write(&unit, local).unwrap();
    unit
}

#[test]
fn the_unit_file_verifies_and_is_hardened() {
    let directory = ConfigFile::new("unit-file", "");
    let unit = unit_file(&directory);
    let analyze = |args: &[&str]| {
        std::process::Command::new("systemd-analyze")
            .args(args)
            .arg(&unit)
            .output()
            .expect("systemd-analyze (Debian's systemd package) is installed")
    };
    let verified = analyze(&["verify"]);
    assert!(
        verified.status.success() && verified.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    // systemd's exposure score runs from 0 (locked down) to 10 (unprotected); the unit is
    // held to 2.0 at most, "OK" on systemd's own scale.
    let security = analyze(&["security", "--offline=true", "--threshold=20", "--no-pager"]);
    let report = String::from_utf8_lossy(&security.stdout);
    assert!(security.status.success(), "{report}");
    assert!(
        report.contains("Overall exposure level for sockway.service"),
        "{report}"
    );
}
