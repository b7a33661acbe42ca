//! The connection to Redis: one multiplexed RESP3 connection to a single Redis, or the
//! `redis` crate's cluster connection (one per shard) for a Redis Cluster. Both carry commands
//! and, as RESP3 pushes, the node's subscription, so one connection per Redis node serves
//! everything; commands to one node are pipelined in the order they are issued.
//!
//! Pub/sub differs by deployment: a single Redis uses `PUBLISH`/`SUBSCRIBE` (works on Redis 6
//! too), a Redis Cluster the sharded `SPUBLISH`/`SSUBSCRIBE` of Redis 7, so a message goes only
//! to the shard that owns the channel's slot instead of to every shard.
//!
//! `rediss://` URLs connect over TLS (rustls with the workspace's ring provider). The
//! certificate files named by `cluster.tls_*` are read once, when the node joins
//! ([`tls_certificates`]); the `redis` crate keeps them for every reconnect.

use std::path::{Path, PathBuf};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    ClientTlsConfig, Cmd, IntoConnectionInfo, Pipeline, ProtocolVersion, PushInfo, RedisError,
    RedisFuture, RedisResult, TlsCertificates, Value,
};
use tokio::sync::mpsc;

use crate::config::RedisTlsConfig;

/// How long one attempt to open a TCP connection to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A cheap-to-clone handle on the Redis connection.
#[derive(Clone)]
pub(super) enum RedisConnection {
    /// A single Redis; reconnects in the background after a failure and subscribes again.
    Single(ConnectionManager),
    /// A Redis Cluster; follows slot moves and subscribes again after reconnecting.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            RedisConnection::Single(_) => "RedisConnection::Single",
            RedisConnection::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl RedisConnection {
    /// Connects to `urls`: one URL is a single Redis, several are the seed nodes of a Redis
    /// Cluster. Pushes (subscription messages, and a `Disconnection` notice when a connection
    /// drops) go to `pushes`; when it is full they are dropped, never waited for: a dropped
    /// request is answered by its caller's timeout.
    ///
    /// `tls` applies to `rediss://` URLs: the CA that verifies the servers (the platform's
    /// roots without one) and a client certificate for mutual TLS.
    pub(super) async fn connect(
        urls: &[String],
        password: Option<&str>,
        tls: Option<TlsCertificates>,
        response_timeout: Duration,
        pushes: mpsc::Sender<PushInfo>,
    ) -> RedisResult<RedisConnection> {
        let push_sender = move |push: PushInfo| pushes.try_send(push);
        if let [url] = urls {
            let info = url.as_str().into_connection_info()?;
            let mut settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            if let Some(password) = password.filter(|_| settings.password().is_none()) {
                settings = settings.set_password(password);
            }
            let info = info.set_redis_settings(settings);
            let client = match tls {
                Some(certificates) => redis::Client::build_with_tls(info, certificates)?,
                None => redis::Client::open(info)?,
            };
            let config = ConnectionManagerConfig::new()
                .set_push_sender(push_sender)
                .set_automatic_resubscription()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(response_timeout))
                // Reconnection is driven by the heartbeat: a failed call fails fast instead of
                // waiting through a long series of retries.
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(200));
            let manager = ConnectionManager::new_with_config(client, config).await?;
            Ok(RedisConnection::Single(manager))
        } else {
            let mut builder = ClusterClientBuilder::new(urls.iter().map(String::as_str));
            if let Some(certificates) = tls {
                builder = builder.certs(certificates);
            }
            if let Some(password) = password {
                builder = builder.password(password);
            }
            let connection = builder
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(push_sender)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(response_timeout)
                .retries(1)
                .build()?
                .get_async_connection()
                .await?;
            Ok(RedisConnection::Cluster(connection))
        }
    }

    /// `PUBLISH` or `SPUBLISH`, whichever this deployment's channels need.
    pub(super) fn publish_command(&self) -> &'static str {
        match self {
            RedisConnection::Single(_) => "PUBLISH",
            RedisConnection::Cluster(_) => "SPUBLISH",
        }
    }

    /// Subscribes to `channel`; the library subscribes again by itself after a reconnect.
    pub(super) async fn subscribe(&mut self, channel: &str) -> Result<(), RedisError> {
        match self {
            RedisConnection::Single(manager) => manager.subscribe(channel).await,
            RedisConnection::Cluster(connection) => connection.ssubscribe(channel).await,
        }
    }

    /// Ends the subscription to `channel`.
    pub(super) async fn unsubscribe(&mut self, channel: &str) -> Result<(), RedisError> {
        match self {
            RedisConnection::Single(manager) => manager.unsubscribe(channel).await,
            RedisConnection::Cluster(connection) => connection.sunsubscribe(channel).await,
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(manager) => manager.req_packed_command(cmd),
            RedisConnection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(manager) => {
                manager.req_packed_commands(pipeline, offset, count)
            }
            RedisConnection::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(manager) => manager.get_db(),
            RedisConnection::Cluster(connection) => connection.get_db(),
        }
    }
}

/// Which `cluster.tls_*` file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {key} `{}`", path.display())]
pub(super) struct TlsFileError {
    /// The config key that names the file.
    pub(super) key: &'static str,
    /// The file.
    pub(super) path: PathBuf,
    /// What the operating system said.
    #[source]
    pub(super) source: std::io::Error,
}

/// The PEM contents of the files `config` names, for a `rediss://` connection; their format is
/// checked by the `redis` crate when the client is built.
pub(super) fn tls_certificates(config: &RedisTlsConfig) -> Result<TlsCertificates, TlsFileError> {
    let read = |key: &'static str, path: &Path| {
        std::fs::read(path).map_err(|source| TlsFileError {
            key,
            path: path.to_owned(),
            source,
        })
    };
    let root_cert = match &config.ca_file {
        Some(path) => Some(read("cluster.tls_ca_file", path)?),
        None => None,
    };
    let client_tls = match &config.client_identity {
        Some((cert_file, key_file)) => Some(ClientTlsConfig {
            client_cert: read("cluster.tls_cert_file", cert_file)?,
            client_key: read("cluster.tls_key_file", key_file)?,
        }),
        None => None,
    };
    Ok(TlsCertificates {
        client_tls,
        root_cert,
    })
}
