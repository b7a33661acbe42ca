//! TLS 1.3 application traffic, protected here once rustls has finished the handshake
//! (RFC 8446 section 5), so that an idle `wss://` connection keeps little more than its keys.
//!
//! rustls hands the connection over through its kernel-TLS interface
//! (`UnbufferedServerConnection::dangerous_into_kernel_connection`): the traffic keys and IVs
//! of both directions, the sequence numbers reached, and a `KernelConnection` that derives the
//! next keys when either side updates them. Between messages a connection then holds the raw
//! keys (at most 32 + 12 bytes a direction), two sequence numbers and rustls's key schedule.
//! rustls's connection (1,088 bytes, with the expanded AEAD keys of its record layer) is gone,
//! and the expanded keys (ring's AES key schedule and GHASH table, about half a KB a
//! direction) are built for each batch of records and dropped after it: a few hundred
//! nanoseconds a batch, against every idle connection's memory.
//!
//! What the record layer does (RFC 8446 5.1–5.5 and 4.6.3):
//! - Every record after the handshake is `application_data` on the outside; its inner content
//!   type follows the plaintext and any zero padding. Application data goes to the caller, an
//!   alert ends the connection (`close_notify` cleanly; `user_canceled` is ignored, as it is
//!   followed by `close_notify`), and the only post-handshake handshake message a server
//!   accepts is `key_update` (the server requests no post-handshake authentication and a
//!   client sends no tickets). A `key_update` that asks for one is answered with the server's
//!   own before anything else is sent under the new keys.
//! - The nonce is the IV XORed with the record's 64-bit sequence number; the additional data
//!   is the record's header. A record that does not decrypt ends the connection with
//!   `bad_record_mac`; one longer than 2^14 + 256 bytes of ciphertext, or 2^14 of plaintext,
//!   with `record_overflow`.
//! - A direction's key is updated before it seals more records than its cipher suite's
//!   confidentiality limit (2^24 for AES-GCM), as rustls does.
//!
//! TLS 1.2 connections stay with rustls for their whole life: there is no key update to carry
//! over, and modern clients negotiate 1.3.

use ring::aead;
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets, SupportedCipherSuite};
use zeroize::Zeroize;

/// The most plaintext one record carries.
pub(super) const MAX_PLAINTEXT: usize = 1 << 14;
/// The most ciphertext one record carries: the plaintext, its content type and padding, and
/// the tag.
const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 256;
/// A record's header: content type, legacy version, length.
pub(super) const HEADER: usize = 5;
/// The AEAD tag of every suite TLS 1.3 defines.
const TAG: usize = 16;
/// The content type byte a sealed record's plaintext ends with.
const INNER_TYPE: usize = 1;

const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
const KEY_UPDATE: u8 = 24;

/// Alert descriptions (RFC 8446 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Alert {
    CloseNotify = 0,
    UnexpectedMessage = 10,
    BadRecordMac = 20,
    RecordOverflow = 22,
    IllegalParameter = 47,
    DecodeError = 50,
    InternalError = 80,
    UserCanceled = 90,
}

/// Why the connection cannot go on: what the peer is told (nothing when the peer sent the
/// alert itself), and what the caller's error says.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) alert: Option<Alert>,
    pub(super) reason: String,
}

impl Failure {
    fn new(alert: Alert, reason: &str) -> Failure {
        Failure {
            alert: Some(alert),
            reason: reason.to_owned(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.reason)
    }
}

impl std::error::Error for Failure {}

/// What [`Records::open`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Opened {
    /// The bytes of `incoming` the whole records read took.
    pub(super) consumed: usize,
    /// The peer sent `close_notify`: nothing after it is read.
    pub(super) closed: bool,
}

/// One direction's traffic key, IV and next sequence number. The key is wiped when it is
/// replaced or dropped.
struct Direction {
    key: [u8; 32],
    key_len: usize,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
}

impl Drop for Direction {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}

impl Direction {
    fn new(seq: u64, secrets: &ConnectionTrafficSecrets) -> Result<Direction, Failure> {
        let (key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv }
            | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
            | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (key.as_ref(), iv.as_ref()),
            _ => {
                return Err(Failure::new(
                    Alert::InternalError,
                    "the negotiated TLS cipher suite has no record layer here",
                ));
            }
        };
        let mut direction = Direction {
            key: [0; 32],
            key_len: key.len(),
            iv: [0; aead::NONCE_LEN],
            seq,
        };
        if key.len() > direction.key.len() || iv.len() != aead::NONCE_LEN {
            return Err(Failure::new(
                Alert::InternalError,
                "unexpected TLS traffic key size",
            ));
        }
        direction.key[..key.len()].copy_from_slice(key);
        direction.iv.copy_from_slice(iv);
        Ok(direction)
    }

    /// The expanded key, for one batch of records.
    fn aead_key(&self, algorithm: &'static aead::Algorithm) -> Result<aead::LessSafeKey, Failure> {
        aead::UnboundKey::new(algorithm, &self.key[..self.key_len])
            .map(aead::LessSafeKey::new)
            .map_err(|_| Failure::new(Alert::InternalError, "invalid TLS traffic key"))
    }

    /// The nonce of the next record (RFC 8446 5.3), and the sequence number moved on.
    fn next_nonce(&mut self) -> Result<aead::Nonce, Failure> {
        let mut nonce = self.iv;
        for (byte, seq) in nonce[aead::NONCE_LEN - 8..]
            .iter_mut()
            .zip(self.seq.to_be_bytes())
        {
            *byte ^= seq;
        }
        self.seq = self.seq.checked_add(1).ok_or_else(|| {
            Failure::new(Alert::InternalError, "TLS record sequence number exhausted")
        })?;
        Ok(aead::Nonce::assume_unique_for_key(nonce))
    }
}

/// A TLS 1.3 connection's record layer after the handshake.
pub(super) struct Records {
    algorithm: &'static aead::Algorithm,
    send: Direction,
    receive: Direction,
    /// rustls's key schedule: the next traffic keys of either direction.
    schedule: KernelConnection<ServerConnectionData>,
    /// How many records one key seals before it is updated.
    confidentiality_limit: u64,
    /// A `key_update` message whose record was split (at most its 5 bytes).
    handshake: Vec<u8>,
    /// A fatal alert went either way: nothing more is read or written.
    failed: bool,
}

impl Records {
    /// Whether this layer carries connections of `suite` (the TLS 1.3 suites ring provides;
    /// TLS 1.2 stays with rustls).
    pub(super) fn supports(suite: SupportedCipherSuite) -> bool {
        algorithm(suite).is_some()
    }

    /// Takes over from rustls: `secrets` and `schedule` are what
    /// `dangerous_into_kernel_connection` returned for a suite [`Records::supports`].
    pub(super) fn new(
        secrets: ExtractedSecrets,
        schedule: KernelConnection<ServerConnectionData>,
    ) -> Result<Records, Failure> {
        let suite = schedule.negotiated_cipher_suite();
        let (Some(algorithm), Some(tls13)) = (algorithm(suite), suite.tls13()) else {
            return Err(Failure::new(
                Alert::InternalError,
                "unsupported TLS 1.3 cipher suite",
            ));
        };
        let ExtractedSecrets {
            tx: (send_seq, send),
            rx: (receive_seq, receive),
        } = secrets;
        Ok(Records {
            algorithm,
            send: Direction::new(send_seq, &send)?,
            receive: Direction::new(receive_seq, &receive)?,
            confidentiality_limit: tls13.common.confidentiality_limit,
            schedule,
            handshake: Vec::new(),
            failed: false,
        })
    }

    /// Decrypts the whole records at the start of `incoming` (in place): application data is
    /// appended to `plaintext`, and a `key_update` the peer asked to be answered is sealed onto
    /// `outgoing`. An incomplete record is left for the caller to complete.
    pub(super) fn open(
        &mut self,
        incoming: &mut [u8],
        plaintext: &mut Vec<u8>,
        outgoing: &mut Vec<u8>,
    ) -> Result<Opened, Failure> {
        self.open_records(incoming, plaintext, outgoing)
            .map_err(|failure| self.fail(failure, outgoing))
    }

    /// Ends the connection on `failure`: its alert (if the peer is to be told, and no fatal
    /// alert went out before) sealed onto `outgoing`; nothing is read or sent after it.
    fn fail(&mut self, failure: Failure, outgoing: &mut Vec<u8>) -> Failure {
        if !self.failed {
            self.failed = true;
            if let Some(alert) = failure.alert {
                let fatal = 2;
                // A connection that cannot seal any more closes without its alert.
                if let Ok(key) = self.send.aead_key(self.algorithm) {
                    let _ = self.seal_record(&key, ALERT, &[fatal, alert as u8], outgoing);
                }
            }
        }
        failure
    }

    fn open_records(
        &mut self,
        incoming: &mut [u8],
        plaintext: &mut Vec<u8>,
        outgoing: &mut Vec<u8>,
    ) -> Result<Opened, Failure> {
        self.check_usable()?;
        let mut consumed = 0;
        // Built for the first record and kept for the rest of this batch (until a key update).
        let mut batch_key: Option<aead::LessSafeKey> = None;
        while incoming.len() - consumed >= HEADER {
            let record = &mut incoming[consumed..];
            let length = usize::from(u16::from_be_bytes([record[3], record[4]]));
            if length > MAX_CIPHERTEXT {
                return Err(Failure::new(
                    Alert::RecordOverflow,
                    "TLS record longer than 2^14 + 256 bytes",
                ));
            }
            if record.len() < HEADER + length {
                break;
            }
            consumed += HEADER + length;
            let (header, body) = record[..HEADER + length].split_at_mut(HEADER);
            if header[0] != APPLICATION_DATA {
                return Err(Failure::new(
                    Alert::UnexpectedMessage,
                    "unprotected TLS record after the handshake",
                ));
            }
            let key = match &mut batch_key {
                Some(key) => key,
                None => batch_key.insert(self.receive.aead_key(self.algorithm)?),
            };
            let nonce = self.receive.next_nonce()?;
            let inner = key
                .open_in_place(nonce, aead::Aad::from(&*header), body)
                .map_err(|_| Failure::new(Alert::BadRecordMac, "TLS record failed to decrypt"))?;
            // The content type is the last non-zero byte; zeros after it are padding.
            let Some(end) = inner.iter().rposition(|&byte| byte != 0) else {
                return Err(Failure::new(
                    Alert::UnexpectedMessage,
                    "TLS record without a content type",
                ));
            };
            // The inner plaintext (content, type, padding) is bounded too (RFC 8446 5.4).
            if inner.len() > MAX_PLAINTEXT + INNER_TYPE {
                return Err(Failure::new(
                    Alert::RecordOverflow,
                    "TLS record with more than 2^14 bytes of plaintext",
                ));
            }
            // Within that bound, so the content (before its type byte) is within 2^14.
            let (content, content_type) = (&inner[..end], inner[end]);
            if content_type != HANDSHAKE && !self.handshake.is_empty() {
                return Err(Failure::new(
                    Alert::UnexpectedMessage,
                    "TLS handshake message interrupted by another record",
                ));
            }
            match content_type {
                APPLICATION_DATA => plaintext.extend_from_slice(content),
                ALERT => match content {
                    [_level, description] if *description == Alert::CloseNotify as u8 => {
                        return Ok(Opened {
                            consumed,
                            closed: true,
                        });
                    }
                    [_level, description] if *description == Alert::UserCanceled as u8 => {}
                    [_level, description] => {
                        return Err(Failure {
                            alert: None,
                            reason: format!("the peer sent TLS alert {description}"),
                        });
                    }
                    _ => return Err(Failure::new(Alert::DecodeError, "malformed TLS alert")),
                },
                HANDSHAKE => {
                    if self.handshake_message(content, outgoing)? {
                        // The receiving key changed: the next record needs the new one.
                        batch_key = None;
                    }
                }
                _ => {
                    return Err(Failure::new(
                        Alert::UnexpectedMessage,
                        "unexpected TLS content type after the handshake",
                    ));
                }
            }
        }
        Ok(Opened {
            consumed,
            closed: false,
        })
    }

    /// A record's worth of post-handshake handshake bytes. Returns whether the receiving key
    /// changed (a whole `key_update` arrived).
    fn handshake_message(
        &mut self,
        content: &[u8],
        outgoing: &mut Vec<u8>,
    ) -> Result<bool, Failure> {
        let Some(update_requested) = key_update(&mut self.handshake, content)? else {
            return Ok(false);
        };
        let (seq, secrets) = self
            .schedule
            .update_rx_secret()
            .map_err(|error| Failure::new(Alert::InternalError, &error.to_string()))?;
        self.receive = Direction::new(seq, &secrets)?;
        if update_requested {
            self.update_send_key(outgoing)?;
        }
        Ok(true)
    }

    /// Seals `data` as application data records onto `outgoing`.
    pub(super) fn seal_data(&mut self, data: &[u8], outgoing: &mut Vec<u8>) -> Result<(), Failure> {
        self.seal_data_records(data, outgoing)
            .map_err(|failure| self.fail(failure, outgoing))
    }

    fn seal_data_records(&mut self, data: &[u8], outgoing: &mut Vec<u8>) -> Result<(), Failure> {
        self.check_usable()?;
        let mut key = self.send.aead_key(self.algorithm)?;
        for chunk in data.chunks(MAX_PLAINTEXT) {
            if self.send.seq.saturating_add(1) >= self.confidentiality_limit {
                // The key update goes out as this key's last record.
                self.update_send_key(outgoing)?;
                key = self.send.aead_key(self.algorithm)?;
            }
            self.seal_record(&key, APPLICATION_DATA, chunk, outgoing)?;
        }
        Ok(())
    }

    /// Seals `close_notify` onto `outgoing`: this side sends nothing more.
    pub(super) fn seal_close_notify(&mut self, outgoing: &mut Vec<u8>) -> Result<(), Failure> {
        self.check_usable()?;
        let warning = 1;
        let key = self.send.aead_key(self.algorithm)?;
        self.seal_record(&key, ALERT, &[warning, Alert::CloseNotify as u8], outgoing)
    }

    /// Sends a `key_update` (not asking the peer for one) under the current key, then
    /// switches to the next.
    fn update_send_key(&mut self, outgoing: &mut Vec<u8>) -> Result<(), Failure> {
        let key = self.send.aead_key(self.algorithm)?;
        self.seal_record(&key, HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0], outgoing)?;
        let (seq, secrets) = self
            .schedule
            .update_tx_secret()
            .map_err(|error| Failure::new(Alert::InternalError, &error.to_string()))?;
        self.send = Direction::new(seq, &secrets)?;
        Ok(())
    }

    /// Appends one record: header, `content`, its content type, the tag.
    fn seal_record(
        &mut self,
        key: &aead::LessSafeKey,
        content_type: u8,
        content: &[u8],
        outgoing: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        debug_assert!(content.len() <= MAX_PLAINTEXT);
        let length = u16::try_from(content.len() + INNER_TYPE + TAG)
            .expect("a record's length fits in 16 bits");
        let [high, low] = length.to_be_bytes();
        let header = [APPLICATION_DATA, 3, 3, high, low];
        let nonce = self.send.next_nonce()?;
        let start = outgoing.len();
        outgoing.reserve(HEADER + usize::from(length));
        outgoing.extend_from_slice(&header);
        outgoing.extend_from_slice(content);
        outgoing.push(content_type);
        match key.seal_in_place_separate_tag(
            nonce,
            aead::Aad::from(header),
            &mut outgoing[start + HEADER..],
        ) {
            Ok(tag) => {
                outgoing.extend_from_slice(tag.as_ref());
                Ok(())
            }
            Err(_) => {
                outgoing.truncate(start);
                Err(Failure::new(
                    Alert::InternalError,
                    "TLS record failed to seal",
                ))
            }
        }
    }

    fn check_usable(&self) -> Result<(), Failure> {
        if self.failed {
            return Err(Failure {
                alert: None,
                reason: "the TLS connection already failed".to_owned(),
            });
        }
        Ok(())
    }

    /// Records sealed under the current sending key.
    #[cfg(test)]
    pub(super) fn sent_under_this_key(&self) -> u64 {
        self.send.seq
    }

    /// Lowers the confidentiality limit, so a test can see keys updated after a few records.
    #[cfg(test)]
    pub(super) fn set_confidentiality_limit(&mut self, limit: u64) {
        self.confidentiality_limit = limit;
    }
}

/// Adds one record's handshake bytes to `pending`: the `key_update` they complete (whether
/// it asks for the peer's in return), or `None` while it is still incomplete. A server takes
/// no other post-handshake message, and a key update must end its record (what follows it
/// would be under the old key).
fn key_update(pending: &mut Vec<u8>, content: &[u8]) -> Result<Option<bool>, Failure> {
    if content.is_empty() {
        return Err(Failure::new(
            Alert::UnexpectedMessage,
            "empty TLS handshake record",
        ));
    }
    pending.extend_from_slice(content);
    if pending[0] != KEY_UPDATE {
        return Err(Failure::new(
            Alert::UnexpectedMessage,
            "TLS handshake message other than key_update after the handshake",
        ));
    }
    // Type, a 24-bit length of 1, the request.
    if pending.len() >= 4 && pending[1..4] != [0, 0, 1] {
        return Err(Failure::new(Alert::DecodeError, "malformed TLS key_update"));
    }
    match pending.len() {
        0..5 => return Ok(None),
        5 => {}
        _ => {
            return Err(Failure::new(
                Alert::UnexpectedMessage,
                "TLS key_update not at the end of its record",
            ));
        }
    }
    let update_requested = match pending[4] {
        0 => false,
        1 => true,
        _ => {
            return Err(Failure::new(
                Alert::IllegalParameter,
                "TLS key_update with an unknown request",
            ));
        }
    };
    *pending = Vec::new();
    Ok(Some(update_requested))
}

/// ring's AEAD for a TLS 1.3 cipher suite this layer carries.
fn algorithm(suite: SupportedCipherSuite) -> Option<&'static aead::Algorithm> {
    suite.tls13()?;
    match suite.suite() {
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => Some(&aead::AES_128_GCM),
        rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => Some(&aead::AES_256_GCM),
        rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => Some(&aead::CHACHA20_POLY1305),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{Alert, key_update};

    /// What `records` (one record's handshake bytes each) make of a fresh buffer: the
    /// outcome of each, or the first refusal's alert.
    fn outcomes(records: &[&[u8]]) -> Result<Vec<Option<bool>>, Alert> {
        let mut pending = Vec::new();
        let mut seen = Vec::new();
        for record in records {
            let outcome = key_update(&mut pending, record)
                .map_err(|failure| failure.alert.expect("a refusal names its alert"))?;
            seen.push(outcome);
        }
        Ok(seen)
    }

    #[test]
    fn a_key_update_is_read_whole_or_split_over_records() {
        assert_eq!(outcomes(&[&[24, 0, 0, 1, 0]]), Ok(vec![Some(false)]));
        assert_eq!(outcomes(&[&[24, 0, 0, 1, 1]]), Ok(vec![Some(true)]));
        for split in 1..5 {
            let message = [24, 0, 0, 1, 1];
            let (first, second) = message.split_at(split);
            assert_eq!(
                outcomes(&[first, second]),
                Ok(vec![None, Some(true)]),
                "split after {split} bytes"
            );
        }
        // One after another, each in its own record.
        assert_eq!(
            outcomes(&[&[24, 0, 0, 1, 0], &[24, 0, 0, 1, 1]]),
            Ok(vec![Some(false), Some(true)])
        );
    }

    #[test]
    fn anything_else_after_the_handshake_is_refused() {
        assert_eq!(outcomes(&[&[]]), Err(Alert::UnexpectedMessage));
        // A NewSessionTicket, a Certificate: not from a client, not unasked.
        assert_eq!(outcomes(&[&[4, 0, 0, 1, 0]]), Err(Alert::UnexpectedMessage));
        assert_eq!(outcomes(&[&[11]]), Err(Alert::UnexpectedMessage));
        assert_eq!(outcomes(&[&[24, 0, 0, 2, 0, 0]]), Err(Alert::DecodeError));
        assert_eq!(outcomes(&[&[24, 0, 1], &[0]]), Err(Alert::DecodeError));
        assert_eq!(outcomes(&[&[24, 0, 0, 1, 2]]), Err(Alert::IllegalParameter));
        // Two key updates in one record: the second would be under the old key.
        assert_eq!(
            outcomes(&[&[24, 0, 0, 1, 0, 24, 0, 0, 1, 0]]),
            Err(Alert::UnexpectedMessage)
        );
    }
}
