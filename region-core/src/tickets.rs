//! The shard's ticket keys and the signed ticket of each booked seat
//! (issue 15; the code format is `shared::ticket`'s). Keys come from
//! `REGION_TICKET_KEYS`: the first signs, every one verifies, so a key
//! can be rotated in (listed second, then first) and out (dropped once no
//! unused ticket carries it) without a ticket becoming unreadable.

use sha2::{Digest, Sha256};
use shared::ticket::{KeyRing, PublicKey, TicketSigner};
use sqlx::PgConnection;
use uuid::Uuid;

/// The signing key and the ring of keys tickets are checked against.
#[derive(Debug)]
pub struct TicketKeys {
    signer: TicketSigner,
    ring: KeyRing,
    public: Vec<PublicKey>,
}

/// A secret shorter than this is refused (it would be guessable).
const MIN_SECRET: usize = 32;

impl TicketKeys {
    /// Parses `id:secret[,id:secret…]` (ids 1–255, distinct; each key is
    /// the SHA-256 of its secret, at least 32 characters).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut signers = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, secret) = part
                .split_once(':')
                .ok_or_else(|| format!("{part:?} is not id:secret"))?;
            let id: u8 = id
                .trim()
                .parse()
                .ok()
                .filter(|i| *i >= 1)
                .ok_or_else(|| format!("key id {id:?} is not 1-255"))?;
            if secret.len() < MIN_SECRET {
                return Err(format!(
                    "the secret of key {id} is shorter than {MIN_SECRET} characters"
                ));
            }
            if signers.iter().any(|s: &TicketSigner| s.id() == id) {
                return Err(format!("key id {id} appears twice"));
            }
            let seed: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
            signers.push(TicketSigner::from_seed(id, &seed));
        }
        let public: Vec<PublicKey> = signers.iter().map(TicketSigner::public).collect();
        let ring = KeyRing::new(&public).map_err(|e| e.to_string())?;
        let signer = signers
            .into_iter()
            .next()
            .ok_or("at least one key is needed")?;
        Ok(Self {
            signer,
            ring,
            public,
        })
    }

    /// Every key a ticket may be signed with, as published.
    pub fn public(&self) -> &[PublicKey] {
        &self.public
    }

    /// The ring that verifies codes.
    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    /// The code of one booked seat.
    pub fn sign(&self, show_id: Uuid, booking_id: Uuid, seat_id: Uuid) -> String {
        self.signer.sign(show_id, booking_id, seat_id)
    }
}

/// One booked seat's ticket.
pub use shared::api::TicketView as SeatTicket;

/// The tickets of a booking's seats, by label (a cancelled booking has
/// none: its seats are no longer active).
pub async fn for_booking(
    conn: &mut PgConnection,
    keys: &TicketKeys,
    booking_id: Uuid,
) -> anyhow::Result<Vec<SeatTicket>> {
    let rows = sqlx::query!(
        "SELECT bs.show_id, bs.seat_id, bs.label, bs.category
           FROM booking_seats bs
          WHERE bs.booking_id = $1 AND bs.active
          ORDER BY bs.label",
        booking_id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| SeatTicket {
            ticket_id: shared::ticket::ticket_id(booking_id, r.seat_id),
            seat_id: r.seat_id,
            code: keys.sign(r.show_id, booking_id, r.seat_id),
            label: r.label,
            category: r.category,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "a-secret-of-at-least-thirty-two-characters";
    const B: &str = "another-secret-of-thirty-two-characters!!";

    #[test]
    fn the_first_key_signs_and_every_key_verifies() {
        let old = TicketKeys::parse(&format!("1:{A}")).unwrap();
        let both = TicketKeys::parse(&format!("2:{B}, 1:{A}")).unwrap();
        let (s, b, seat) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let code = old.sign(s, b, seat);
        assert_eq!(both.ring().verify(&code).unwrap().key_id, 1);
        assert_eq!(
            both.ring().verify(&both.sign(s, b, seat)).unwrap().key_id,
            2
        );
        assert_eq!(both.public().len(), 2);
    }

    #[test]
    fn bad_key_lists_are_refused() {
        for bad in [
            "",
            "1",
            "0:abcdefghijklmnopqrstuvwxyz0123456789",
            "1:short",
            &format!("1:{A},1:{B}"),
            &format!("x:{A}"),
        ] {
            assert!(TicketKeys::parse(bad).is_err(), "{bad:?}");
        }
    }
}
