//! Pure domain code shared by the edge Worker and the region core.
//!
//! Everything here compiles for both native targets and
//! `wasm32-unknown-unknown`: no I/O, no clock reads (callers pass `now`),
//! no async runtime. It holds the identifiers and their parsing, the API's
//! request and response types, and the error body every boundary returns.

pub mod admission;
pub mod api;
pub mod booking_number;
pub mod breaker;
pub mod catalog_version;
pub mod client_ip;
pub mod csrf;
pub mod display;
pub mod error;
pub mod ids;
pub mod live;
pub mod rate_limit;
pub mod redis_scripts;
pub mod refund;
pub mod seat;
pub mod text;
pub mod ticket;
pub mod token;
pub mod waiting_room;
pub mod webhook_sig;

pub use error::{ErrorBody, ErrorDetail};
pub use ids::{BookingId, CityCode, HoldId, MovieId, ParseIdError, ShowId};
pub use seat::{SeatLabel, SeatState};
