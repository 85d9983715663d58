//! Signed tickets (issue 15): what a buyer shows at the door, and how a
//! gate checks it, online or offline. Pure: native and wasm32 (a browser
//! scanner page verifies codes with this module alone).
//!
//! A ticket code is `base64url(payload ‖ signature)`, 130 bytes, 174
//! characters: short enough for a QR code (version 9–10 at level M).
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version ([`VERSION`]) |
//! | 1 | key id (which of the shard's keys signed it) |
//! | 16 | ticket id (derived from booking and seat: [`ticket_id`]) |
//! | 16 | show id |
//! | 16 | booking id |
//! | 16 | seat id |
//! | 64 | Ed25519 signature over the 66 bytes above |
//!
//! Keys rotate: a shard signs with one key and publishes every key still
//! valid, each with its id; a [`KeyRing`] accepts a code signed by any of
//! them. A code is re-rendered from the booking whenever needed (Ed25519
//! signatures are deterministic), so nothing per ticket is stored.
//!
//! **Offline mode.** A gate without a network keeps the show's public
//! keys and an [`OfflineScanner`]: it admits a code whose signature is
//! good, for its show, once per ticket at that gate, and keeps each scan
//! to upload later. What it cannot know offline: a booking cancelled
//! since the keys were loaded, and scans at other gates. Both come out at
//! upload, where the region core reports a second scan of a ticket as a
//! conflict instead of losing it.

use std::collections::HashMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The code format's version.
pub const VERSION: u8 = 1;

const PAYLOAD: usize = 2 + 16 * 4;
const CODE: usize = PAYLOAD + 64;

/// Ticket ids are UUID v5 of (booking, seat) under this namespace.
const NAMESPACE: Uuid = Uuid::from_u128(0x6d1c_5e0a_4a1f_4f0e_9a57_7c3b_2e61_d402);

/// The ticket id of a booked seat: stable, so the same seat of the same
/// booking always has the same ticket.
pub fn ticket_id(booking_id: Uuid, seat_id: Uuid) -> Uuid {
    let mut name = [0u8; 32];
    name[..16].copy_from_slice(booking_id.as_bytes());
    name[16..].copy_from_slice(seat_id.as_bytes());
    Uuid::new_v5(&NAMESPACE, &name)
}

/// What a code says (after its signature was checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The key that signed it.
    pub key_id: u8,
    /// The ticket.
    pub ticket_id: Uuid,
    /// The show it admits to.
    pub show_id: Uuid,
    /// The booking.
    pub booking_id: Uuid,
    /// The seat.
    pub seat_id: Uuid,
}

impl Ticket {
    /// The ticket of `seat` in `booking` for `show`, to be signed with key
    /// `key_id`.
    pub fn new(key_id: u8, show_id: Uuid, booking_id: Uuid, seat_id: Uuid) -> Self {
        Self {
            key_id,
            ticket_id: ticket_id(booking_id, seat_id),
            show_id,
            booking_id,
            seat_id,
        }
    }

    fn payload(&self) -> [u8; PAYLOAD] {
        let mut p = [0u8; PAYLOAD];
        p[0] = VERSION;
        p[1] = self.key_id;
        for (i, id) in [self.ticket_id, self.show_id, self.booking_id, self.seat_id]
            .iter()
            .enumerate()
        {
            p[2 + 16 * i..2 + 16 * (i + 1)].copy_from_slice(id.as_bytes());
        }
        p
    }
}

/// Why a code is not a valid ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not base64url, or not the right length.
    #[error("not a ticket code")]
    Malformed,
    /// A format this code does not know.
    #[error("ticket format {0} is not supported")]
    Version(u8),
    /// Signed with a key the ring does not hold (retired, or another
    /// shard's).
    #[error("signed with unknown key {0}")]
    UnknownKey(u8),
    /// The signature does not match: forged or altered.
    #[error("the signature does not match")]
    BadSignature,
    /// The ticket id is not the one its booking and seat give.
    #[error("the ticket id does not match its booking and seat")]
    Inconsistent,
}

/// A published public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    /// Key id (the code's second byte).
    pub id: u8,
    /// Always `Ed25519`.
    pub alg: String,
    /// The 32-byte public key, base64url without padding.
    pub public_key: String,
}

/// A shard's signing key.
pub struct TicketSigner {
    id: u8,
    key: SigningKey,
}

impl TicketSigner {
    /// Key `id` from its 32-byte secret seed.
    pub fn from_seed(id: u8, seed: &[u8; 32]) -> Self {
        Self {
            id,
            key: SigningKey::from_bytes(seed),
        }
    }

    /// Its id.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// Its public half, as published.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            id: self.id,
            alg: "Ed25519".into(),
            public_key: b64().encode(self.key.verifying_key().as_bytes()),
        }
    }

    /// The code of seat `seat_id` of `booking_id` for `show_id`.
    pub fn sign(&self, show_id: Uuid, booking_id: Uuid, seat_id: Uuid) -> String {
        let ticket = Ticket::new(self.id, show_id, booking_id, seat_id);
        let payload = ticket.payload();
        let sig = self.key.sign(&payload);
        let mut code = Vec::with_capacity(CODE);
        code.extend_from_slice(&payload);
        code.extend_from_slice(&sig.to_bytes());
        b64().encode(code)
    }
}

impl std::fmt::Debug for TicketSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("TicketSigner")
            .field("id", &self.id)
            .finish()
    }
}

/// The public keys a verifier accepts.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: HashMap<u8, VerifyingKey>,
}

impl KeyRing {
    /// A ring of `keys` (as published). Refuses a key that is not an
    /// Ed25519 public key.
    pub fn new(keys: &[PublicKey]) -> Result<Self, TicketError> {
        let mut ring = HashMap::new();
        for k in keys {
            if k.alg != "Ed25519" {
                return Err(TicketError::UnknownKey(k.id));
            }
            let bytes: [u8; 32] = b64()
                .decode(&k.public_key)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or(TicketError::Malformed)?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| TicketError::Malformed)?;
            ring.insert(k.id, key);
        }
        Ok(Self { keys: ring })
    }

    /// The ticket a code names, if its signature is good.
    pub fn verify(&self, code: &str) -> Result<Ticket, TicketError> {
        let raw = b64()
            .decode(code.trim())
            .map_err(|_| TicketError::Malformed)?;
        if raw.len() != CODE {
            return Err(TicketError::Malformed);
        }
        let (payload, sig) = raw.split_at(PAYLOAD);
        if payload[0] != VERSION {
            return Err(TicketError::Version(payload[0]));
        }
        let key = self
            .keys
            .get(&payload[1])
            .ok_or(TicketError::UnknownKey(payload[1]))?;
        let sig = Signature::from_slice(sig).map_err(|_| TicketError::Malformed)?;
        key.verify_strict(payload, &sig)
            .map_err(|_| TicketError::BadSignature)?;
        let id =
            |i: usize| Uuid::from_slice(&payload[2 + 16 * i..2 + 16 * (i + 1)]).expect("16 bytes");
        let ticket = Ticket {
            key_id: payload[1],
            ticket_id: id(0),
            show_id: id(1),
            booking_id: id(2),
            seat_id: id(3),
        };
        if ticket.ticket_id != ticket_id(ticket.booking_id, ticket.seat_id) {
            return Err(TicketError::Inconsistent);
        }
        Ok(ticket)
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// One scan made offline, to upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineScan {
    /// The code as scanned.
    pub code: String,
    /// The gate.
    pub gate: String,
    /// When it was scanned.
    pub scanned_at: DateTime<Utc>,
}

/// What an offline gate does with a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfflineVerdict {
    /// Good signature, this show, first time at this gate: let them in.
    Admit(Ticket),
    /// Already scanned at this gate, at that time.
    AlreadyScanned(DateTime<Utc>),
    /// A genuine ticket for another show.
    WrongShow(Ticket),
    /// Not a valid ticket.
    Invalid(TicketError),
}

/// A gate that verifies by signature alone while it has no network, and
/// keeps its scans for the upload (`POST /v1/shows/{id}/checkins/offline`).
#[derive(Debug, Clone)]
pub struct OfflineScanner {
    show_id: Uuid,
    gate: String,
    ring: KeyRing,
    seen: HashMap<Uuid, DateTime<Utc>>,
    scans: Vec<OfflineScan>,
}

impl OfflineScanner {
    /// A scanner at `gate` for `show_id`, accepting `ring`'s keys.
    pub fn new(show_id: Uuid, gate: &str, ring: KeyRing) -> Self {
        Self {
            show_id,
            gate: gate.to_owned(),
            ring,
            seen: HashMap::new(),
            scans: Vec::new(),
        }
    }

    /// Judges `code` scanned at `now`; an admitted scan is kept for upload.
    pub fn scan(&mut self, code: &str, now: DateTime<Utc>) -> OfflineVerdict {
        let ticket = match self.ring.verify(code) {
            Ok(t) => t,
            Err(e) => return OfflineVerdict::Invalid(e),
        };
        if ticket.show_id != self.show_id {
            return OfflineVerdict::WrongShow(ticket);
        }
        if let Some(at) = self.seen.get(&ticket.ticket_id) {
            return OfflineVerdict::AlreadyScanned(*at);
        }
        self.seen.insert(ticket.ticket_id, now);
        self.scans.push(OfflineScan {
            code: code.trim().to_owned(),
            gate: self.gate.clone(),
            scanned_at: now,
        });
        OfflineVerdict::Admit(ticket)
    }

    /// The admitted scans not yet uploaded (removed from the scanner; a
    /// failed upload should put them back with [`Self::restore`]).
    pub fn take_uploads(&mut self) -> Vec<OfflineScan> {
        std::mem::take(&mut self.scans)
    }

    /// Puts scans back after a failed upload.
    pub fn restore(&mut self, mut scans: Vec<OfflineScan>) {
        scans.append(&mut self.scans);
        self.scans = scans;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (Uuid, Uuid, Uuid) {
        (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3))
    }

    fn signer(id: u8) -> TicketSigner {
        TicketSigner::from_seed(id, &[id; 32])
    }

    #[test]
    fn a_code_verifies_and_names_its_seat() {
        let (show, booking, seat) = ids();
        let s = signer(1);
        let code = s.sign(show, booking, seat);
        assert_eq!(code.len(), 174);
        assert_eq!(s.sign(show, booking, seat), code, "deterministic");
        let ring = KeyRing::new(&[s.public()]).unwrap();
        let t = ring.verify(&code).unwrap();
        assert_eq!(
            (t.show_id, t.booking_id, t.seat_id, t.key_id),
            (show, booking, seat, 1)
        );
        assert_eq!(t.ticket_id, ticket_id(booking, seat));
        assert_ne!(ticket_id(booking, seat), ticket_id(seat, booking));
    }

    #[test]
    fn any_flipped_bit_is_refused() {
        let (show, booking, seat) = ids();
        let s = signer(7);
        let ring = KeyRing::new(&[s.public()]).unwrap();
        let raw = b64().decode(s.sign(show, booking, seat)).unwrap();
        for byte in 0..raw.len() {
            for bit in 0..8 {
                let mut bad = raw.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    ring.verify(&b64().encode(&bad)).is_err(),
                    "bit {bit} of byte {byte}"
                );
            }
        }
        assert_eq!(ring.verify("not a code"), Err(TicketError::Malformed));
        assert_eq!(
            ring.verify(&b64().encode(&raw[..100])),
            Err(TicketError::Malformed)
        );
    }

    #[test]
    fn keys_rotate_and_a_retired_key_is_refused() {
        let (show, booking, seat) = ids();
        let (old, new) = (signer(1), signer(2));
        let both = KeyRing::new(&[new.public(), old.public()]).unwrap();
        assert!(both.verify(&old.sign(show, booking, seat)).is_ok());
        assert!(both.verify(&new.sign(show, booking, seat)).is_ok());
        let only_new = KeyRing::new(&[new.public()]).unwrap();
        assert_eq!(
            only_new.verify(&old.sign(show, booking, seat)),
            Err(TicketError::UnknownKey(1))
        );
        // Another key claiming the old key's id: a forgery.
        let impostor = TicketSigner::from_seed(2, &[9; 32]);
        assert_eq!(
            only_new.verify(&impostor.sign(show, booking, seat)),
            Err(TicketError::BadSignature)
        );
    }

    #[test]
    fn an_offline_gate_admits_once_and_keeps_its_scans() {
        let (show, booking, seat) = ids();
        let s = signer(1);
        let ring = KeyRing::new(&[s.public()]).unwrap();
        let mut gate = OfflineScanner::new(show, "north", ring);
        let code = s.sign(show, booking, seat);
        let t0: DateTime<Utc> = "2030-01-15T19:00:00Z".parse().unwrap();
        assert!(matches!(gate.scan(&code, t0), OfflineVerdict::Admit(_)));
        assert_eq!(
            gate.scan(&code, t0 + chrono::Duration::minutes(1)),
            OfflineVerdict::AlreadyScanned(t0)
        );
        let other = s.sign(Uuid::from_u128(99), booking, seat);
        assert!(matches!(
            gate.scan(&other, t0),
            OfflineVerdict::WrongShow(_)
        ));
        assert!(matches!(
            gate.scan("garbage", t0),
            OfflineVerdict::Invalid(TicketError::Malformed)
        ));
        let uploads = gate.take_uploads();
        assert_eq!(uploads.len(), 1);
        assert_eq!(
            (uploads[0].gate.as_str(), uploads[0].scanned_at),
            ("north", t0)
        );
        assert!(gate.take_uploads().is_empty());
        gate.restore(uploads);
        assert_eq!(gate.take_uploads().len(), 1, "a failed upload keeps them");
    }
}
