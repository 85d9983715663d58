//! The cancellation refund policy (invariant 7 in docs/architecture.md): how much of what was
//! paid comes back, given how long before the show's start a booking is
//! cancelled.
//!
//! Everything is computed on UTC instants, never on local wall-clock times:
//! "24 hours before" means 24 real hours, so a daylight-saving change between
//! the cancellation and the show neither grants nor costs an hour.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// The most tiers a policy may have.
pub const MAX_TIERS: usize = 10;

/// The longest notice a tier may ask for, in hours (one year).
pub const MAX_MIN_HOURS_BEFORE: u32 = 8760;

/// One tier: cancelling at least `min_hours_before` hours before the show
/// refunds `percent` % of what was paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundTier {
    /// The notice this tier needs, in whole hours before the show starts.
    pub min_hours_before: u32,
    /// The share of the amount paid that is refunded, 0 to 100.
    pub percent: u8,
}

/// A cancellation refund policy: a set of tiers, of which the one with the
/// longest notice that the cancellation still meets applies; with none, the
/// refund is 0 %.
///
/// Deserializing does not validate: call [`RefundPolicy::validate`] after
/// loading a policy from configuration or an operator request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPolicy {
    /// The tiers, in any order.
    pub tiers: Vec<RefundTier>,
}

impl Default for RefundPolicy {
    /// 100 % at 24 h or more before the show, 50 % at 4 h or more, else 0.
    fn default() -> Self {
        Self {
            tiers: vec![
                RefundTier {
                    min_hours_before: 24,
                    percent: 100,
                },
                RefundTier {
                    min_hours_before: 4,
                    percent: 50,
                },
            ],
        }
    }
}

/// Why a refund policy was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The policy has no tiers.
    #[error("a refund policy needs at least one tier")]
    NoTiers,
    /// More than [`MAX_TIERS`] tiers.
    #[error("a refund policy may have at most {max} tiers, got {got}")]
    TooManyTiers {
        /// The limit.
        max: usize,
        /// How many were given.
        got: usize,
    },
    /// A percent above 100.
    #[error("a refund can be at most 100 %, but the tier for {min_hours_before} h before the show refunds {percent} %")]
    PercentOver100 {
        /// The tier's notice.
        min_hours_before: u32,
        /// Its percent.
        percent: u8,
    },
    /// A notice longer than [`MAX_MIN_HOURS_BEFORE`].
    #[error("a tier can ask for at most {max} h (one year) of notice, got {min_hours_before} h")]
    NoticeTooLong {
        /// The limit.
        max: u32,
        /// The tier's notice.
        min_hours_before: u32,
    },
    /// Two tiers ask for the same notice.
    #[error("two tiers both start at {0} h before the show")]
    DuplicateNotice(u32),
    /// A longer notice refunds less than a shorter one.
    #[error(
        "cancelling {longer_hours} h before the show would refund {longer_percent} %, \
         less than the {shorter_percent} % refunded at {shorter_hours} h; \
         cancelling earlier must never refund less"
    )]
    LongerNoticeRefundsLess {
        /// The longer notice.
        longer_hours: u32,
        /// What it refunds.
        longer_percent: u8,
        /// The shorter notice.
        shorter_hours: u32,
        /// What it refunds.
        shorter_percent: u8,
    },
}

/// Why a booking cannot be cancelled at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CancelRefused {
    /// The show has started (`now >= show_starts_at`).
    #[error("the show has already started, so the booking can no longer be cancelled")]
    ShowStarted,
}

/// What cancelling now would refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundQuote {
    /// The share refunded, 0 to 100.
    pub percent: u8,
    /// The amount refunded, in the same minor units as the amount paid.
    pub refund_minor: i64,
    /// The tier that applied; `None` when no tier did (0 %).
    pub tier: Option<RefundTier>,
    /// When the refund would next drop: cancelling at or before this instant
    /// still refunds `percent`, any later refunds less (it is the show's
    /// start minus the applied tier's notice, or a later tier boundary if
    /// the next tiers refund the same). `None` if the refund cannot drop
    /// further before the show.
    pub changes_at: Option<DateTime<Utc>>,
}

impl RefundPolicy {
    /// Checks the policy: 1 to [`MAX_TIERS`] tiers, each percent at most 100,
    /// each notice at most [`MAX_MIN_HOURS_BEFORE`] hours and different from
    /// the others, and a longer notice never refunding less than a shorter.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.tiers.is_empty() {
            return Err(PolicyError::NoTiers);
        }
        if self.tiers.len() > MAX_TIERS {
            return Err(PolicyError::TooManyTiers {
                max: MAX_TIERS,
                got: self.tiers.len(),
            });
        }
        for t in &self.tiers {
            if t.percent > 100 {
                return Err(PolicyError::PercentOver100 {
                    min_hours_before: t.min_hours_before,
                    percent: t.percent,
                });
            }
            if t.min_hours_before > MAX_MIN_HOURS_BEFORE {
                return Err(PolicyError::NoticeTooLong {
                    max: MAX_MIN_HOURS_BEFORE,
                    min_hours_before: t.min_hours_before,
                });
            }
        }
        let mut sorted = self.tiers.clone();
        sorted.sort_by_key(|t| t.min_hours_before);
        for pair in sorted.windows(2) {
            let (shorter, longer) = (pair[0], pair[1]);
            if shorter.min_hours_before == longer.min_hours_before {
                return Err(PolicyError::DuplicateNotice(longer.min_hours_before));
            }
            if longer.percent < shorter.percent {
                return Err(PolicyError::LongerNoticeRefundsLess {
                    longer_hours: longer.min_hours_before,
                    longer_percent: longer.percent,
                    shorter_hours: shorter.min_hours_before,
                    shorter_percent: shorter.percent,
                });
            }
        }
        Ok(())
    }

    /// Quotes the refund for cancelling at `now` a booking that cost
    /// `paid_minor` (minor units, e.g. paise) for a show starting at
    /// `show_starts_at`.
    ///
    /// A tier applies when `show_starts_at - now` is at least its notice,
    /// to the second: exactly 24 h before meets a 24 h tier, one second less
    /// does not. Of the tiers that apply, the longest notice wins. A percent
    /// above 100 (a policy that skipped [`validate`](Self::validate)) counts
    /// as 100, so a refund never exceeds the charge.
    pub fn quote(
        &self,
        paid_minor: i64,
        show_starts_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<RefundQuote, CancelRefused> {
        if now >= show_starts_at {
            return Err(CancelRefused::ShowStarted);
        }
        let notice = show_starts_at - now;
        let tier = self.longest_tier(|hours| notice >= hours_delta(hours));
        let percent = tier.map_or(0, |t| t.percent.min(100));
        // Rounding down (toward zero) keeps a refund from exceeding its share
        // of the charge. In i128 the product cannot overflow, and as
        // percent <= 100 the quotient's magnitude is at most |paid_minor|,
        // so converting back to i64 cannot truncate.
        let refund_minor = (i128::from(paid_minor) * i128::from(percent) / 100) as i64;
        let changes_at =
            tier.and_then(|t| self.drops_after(t.min_hours_before, percent, show_starts_at));
        Ok(RefundQuote {
            percent,
            refund_minor,
            tier,
            changes_at,
        })
    }

    /// Of the tiers whose notice satisfies `applies`, the one with the
    /// longest notice.
    fn longest_tier(&self, applies: impl Fn(u32) -> bool) -> Option<RefundTier> {
        self.tiers
            .iter()
            .filter(|t| applies(t.min_hours_before))
            .max_by_key(|t| t.min_hours_before)
            .copied()
    }

    /// The first tier boundary, at or after the current tier's
    /// (`boundary_hours` before the show), past which the refund falls below
    /// `percent`; tiers refunding the same are stepped over.
    fn drops_after(
        &self,
        mut boundary_hours: u32,
        percent: u8,
        show_starts_at: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        loop {
            // Just past the boundary, the next shorter notice applies.
            let next = self.longest_tier(|hours| hours < boundary_hours);
            if next.map_or(0, |t| t.percent.min(100)) < percent {
                // A drop at the show's start is no drop: from then on
                // cancelling is refused, not refunded less.
                if boundary_hours == 0 {
                    return None;
                }
                return show_starts_at.checked_sub_signed(hours_delta(boundary_hours));
            }
            // Terminates: each step strictly shortens the boundary.
            boundary_hours = next?.min_hours_before;
        }
    }
}

/// `hours` as a duration; every `u32` number of hours fits.
fn hours_delta(hours: u32) -> TimeDelta {
    TimeDelta::seconds(i64::from(hours) * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};
    use chrono_tz::America::New_York;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 18, 30, 0).unwrap()
    }

    fn quote_at(before: TimeDelta, paid: i64) -> Result<RefundQuote, CancelRefused> {
        RefundPolicy::default().quote(paid, start(), start() - before)
    }

    fn tier(min_hours_before: u32, percent: u8) -> RefundTier {
        RefundTier {
            min_hours_before,
            percent,
        }
    }

    /// A New York wall-clock time as a UTC instant (must be unambiguous).
    fn new_york(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        New_York
            .with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn default_policy_is_valid_and_matches_the_design() {
        let p = RefundPolicy::default();
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(p.tiers, vec![tier(24, 100), tier(4, 50)]);
    }

    #[test]
    fn tier_boundaries_are_inclusive_to_the_second() {
        let h = TimeDelta::hours;
        let s = TimeDelta::seconds;
        let pct = |d| quote_at(d, 1000).unwrap().percent;
        assert_eq!(pct(h(48)), 100);
        assert_eq!(pct(h(24)), 100);
        assert_eq!(pct(h(24) - s(1)), 50);
        assert_eq!(pct(h(4)), 50);
        assert_eq!(pct(h(4) - s(1)), 0);
        assert_eq!(pct(s(1)), 0);
        assert_eq!(pct(TimeDelta::nanoseconds(1)), 0);
    }

    #[test]
    fn quotes_carry_amount_tier_and_next_drop() {
        let q = quote_at(TimeDelta::hours(30), 1000).unwrap();
        assert_eq!(
            q,
            RefundQuote {
                percent: 100,
                refund_minor: 1000,
                tier: Some(tier(24, 100)),
                changes_at: Some(start() - TimeDelta::hours(24)),
            }
        );
        let q = quote_at(TimeDelta::hours(24), 1000).unwrap();
        // At the boundary itself the 100 % still holds; it drops right after.
        assert_eq!(q.changes_at, Some(start() - TimeDelta::hours(24)));
        let q = quote_at(TimeDelta::hours(10), 1000).unwrap();
        assert_eq!((q.percent, q.refund_minor), (50, 500));
        assert_eq!(q.tier, Some(tier(4, 50)));
        assert_eq!(q.changes_at, Some(start() - TimeDelta::hours(4)));
        let q = quote_at(TimeDelta::hours(1), 1000).unwrap();
        assert_eq!(
            q,
            RefundQuote {
                percent: 0,
                refund_minor: 0,
                tier: None,
                changes_at: None,
            }
        );
    }

    #[test]
    fn no_cancelling_once_the_show_has_started() {
        let p = RefundPolicy::default();
        assert_eq!(
            p.quote(1000, start(), start()),
            Err(CancelRefused::ShowStarted)
        );
        assert_eq!(
            p.quote(1000, start(), start() + TimeDelta::seconds(1)),
            Err(CancelRefused::ShowStarted)
        );
        assert_eq!(
            CancelRefused::ShowStarted.to_string(),
            "the show has already started, so the booking can no longer be cancelled"
        );
    }

    #[test]
    fn refunds_round_down_and_do_not_overflow() {
        let at_50 = TimeDelta::hours(5);
        assert_eq!(quote_at(at_50, 999).unwrap().refund_minor, 499);
        assert_eq!(quote_at(at_50, 1).unwrap().refund_minor, 0);
        assert_eq!(quote_at(at_50, 0).unwrap().refund_minor, 0);
        assert_eq!(
            quote_at(at_50, i64::MAX).unwrap().refund_minor,
            i64::MAX / 2
        );
        let at_100 = TimeDelta::hours(25);
        assert_eq!(quote_at(at_100, i64::MAX).unwrap().refund_minor, i64::MAX);
        let p = RefundPolicy {
            tiers: vec![tier(0, 33)],
        };
        let q = p.quote(100, start(), start() - at_50).unwrap();
        assert_eq!(q.refund_minor, 33);
        let q = p.quote(101, start(), start() - at_50).unwrap();
        assert_eq!(q.refund_minor, 33);
    }

    #[test]
    fn zero_tier_policy_refunds_nothing_and_does_not_validate() {
        let p = RefundPolicy { tiers: vec![] };
        let q = p
            .quote(1000, start(), start() - TimeDelta::days(30))
            .unwrap();
        assert_eq!(
            (q.percent, q.refund_minor, q.tier, q.changes_at),
            (0, 0, None, None)
        );
        assert_eq!(p.validate(), Err(PolicyError::NoTiers));
    }

    #[test]
    fn tiers_in_any_order_pick_the_longest_notice_met() {
        let p = RefundPolicy {
            tiers: vec![tier(4, 50), tier(72, 100), tier(0, 10), tier(24, 75)],
        };
        assert_eq!(p.validate(), Ok(()));
        let q = |hours| {
            p.quote(1000, start(), start() - TimeDelta::hours(hours))
                .unwrap()
        };
        assert_eq!(q(100).tier, Some(tier(72, 100)));
        assert_eq!(q(30).tier, Some(tier(24, 75)));
        assert_eq!(q(5).tier, Some(tier(4, 50)));
        assert_eq!(q(1).tier, Some(tier(0, 10)));
        // The 0 h tier holds until the show starts, when cancelling is
        // refused: the refund never drops.
        assert_eq!(q(1).changes_at, None);
        assert_eq!(q(5).changes_at, Some(start() - TimeDelta::hours(4)));
    }

    #[test]
    fn next_drop_skips_tiers_that_refund_the_same() {
        let p = RefundPolicy {
            tiers: vec![tier(48, 100), tier(24, 100), tier(4, 50), tier(2, 0)],
        };
        assert_eq!(p.validate(), Ok(()));
        let q = |hours| {
            p.quote(1000, start(), start() - TimeDelta::hours(hours))
                .unwrap()
        };
        assert_eq!(q(50).changes_at, Some(start() - TimeDelta::hours(24)));
        assert_eq!(q(30).changes_at, Some(start() - TimeDelta::hours(24)));
        assert_eq!(q(5).changes_at, Some(start() - TimeDelta::hours(4)));
        // Already at 0 % (an explicit 0 % tier, or no tier): nothing lower.
        assert_eq!((q(3).percent, q(3).changes_at), (0, None));
        assert_eq!((q(1).tier, q(1).changes_at), (None, None));
    }

    #[test]
    fn unvalidated_percent_above_100_is_capped() {
        let p = RefundPolicy {
            tiers: vec![tier(0, 200)],
        };
        let q = p
            .quote(1000, start(), start() - TimeDelta::hours(1))
            .unwrap();
        assert_eq!((q.percent, q.refund_minor), (100, 1000));
    }

    #[test]
    fn validation_failures() {
        let check = |tiers: Vec<RefundTier>| RefundPolicy { tiers }.validate();
        assert_eq!(
            check((0..11).map(|h| tier(h, 100)).collect()),
            Err(PolicyError::TooManyTiers { max: 10, got: 11 })
        );
        assert_eq!(check((0..10).map(|h| tier(h, 100)).collect()), Ok(()));
        assert_eq!(
            check(vec![tier(24, 101)]),
            Err(PolicyError::PercentOver100 {
                min_hours_before: 24,
                percent: 101
            })
        );
        assert_eq!(check(vec![tier(8760, 100)]), Ok(()));
        assert_eq!(
            check(vec![tier(8761, 100)]),
            Err(PolicyError::NoticeTooLong {
                max: 8760,
                min_hours_before: 8761
            })
        );
        assert_eq!(
            check(vec![tier(24, 100), tier(4, 50), tier(24, 50)]),
            Err(PolicyError::DuplicateNotice(24))
        );
        assert_eq!(
            check(vec![tier(48, 50), tier(24, 100)]),
            Err(PolicyError::LongerNoticeRefundsLess {
                longer_hours: 48,
                longer_percent: 50,
                shorter_hours: 24,
                shorter_percent: 100
            })
        );
        assert_eq!(check(vec![tier(48, 100), tier(24, 100)]), Ok(()));
        assert_eq!(check(vec![tier(0, 0)]), Ok(()));
    }

    #[test]
    fn policy_errors_read_well() {
        assert_eq!(
            PolicyError::LongerNoticeRefundsLess {
                longer_hours: 48,
                longer_percent: 50,
                shorter_hours: 24,
                shorter_percent: 100
            }
            .to_string(),
            "cancelling 48 h before the show would refund 50 %, less than the 100 % \
             refunded at 24 h; cancelling earlier must never refund less"
        );
        assert_eq!(
            PolicyError::TooManyTiers { max: 10, got: 11 }.to_string(),
            "a refund policy may have at most 10 tiers, got 11"
        );
    }

    #[test]
    fn serde_round_trips() {
        let p = RefundPolicy::default();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"tiers":[{"min_hours_before":24,"percent":100},{"min_hours_before":4,"percent":50}]}"#
        );
        assert_eq!(serde_json::from_str::<RefundPolicy>(&json).unwrap(), p);

        let q = quote_at(TimeDelta::hours(10), 999).unwrap();
        let json = serde_json::to_value(q).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "percent": 50,
                "refund_minor": 499,
                "tier": {"min_hours_before": 4, "percent": 50},
                "changes_at": "2026-11-28T14:30:00Z",
            })
        );
        assert_eq!(serde_json::from_value::<RefundQuote>(json).unwrap(), q);
    }

    #[test]
    fn fall_back_counts_real_hours_not_wall_clock() {
        // New York falls back at 02:00 on 2026-11-01, so 10:00 that morning
        // is EST (UTC-5) while the day before is EDT (UTC-4): between
        // 10:00 on the 31st and 10:00 on the 1st lie 25 real hours.
        let show = new_york(2026, 11, 1, 10, 0, 0);
        assert_eq!(
            show,
            NaiveDate::from_ymd_opt(2026, 11, 1)
                .unwrap()
                .and_hms_opt(15, 0, 0)
                .unwrap()
                .and_utc()
        );
        let p = RefundPolicy::default();
        let pct = |now| p.quote(1000, show, now).unwrap().percent;
        let ten_edt = new_york(2026, 10, 31, 10, 0, 0);
        assert_eq!(show - ten_edt, TimeDelta::hours(25));
        assert_eq!(pct(ten_edt), 100);
        // 11:00 EDT is exactly 24 real hours before.
        let eleven_edt = new_york(2026, 10, 31, 11, 0, 0);
        assert_eq!(show - eleven_edt, TimeDelta::hours(24));
        assert_eq!(pct(eleven_edt), 100);
        assert_eq!(pct(new_york(2026, 10, 31, 11, 0, 1)), 50);
    }

    #[test]
    fn spring_forward_counts_real_hours_not_wall_clock() {
        // New York springs forward at 02:00 on 2026-03-08: 10:00 that
        // morning is EDT (UTC-4), the day before EST (UTC-5), so "the same
        // time yesterday" is only 23 real hours before.
        let show = new_york(2026, 3, 8, 10, 0, 0);
        let p = RefundPolicy::default();
        let pct = |now| p.quote(1000, show, now).unwrap().percent;
        let same_time_yesterday = new_york(2026, 3, 7, 10, 0, 0);
        assert_eq!(show - same_time_yesterday, TimeDelta::hours(23));
        assert_eq!(pct(same_time_yesterday), 50);
        let nine_est = new_york(2026, 3, 7, 9, 0, 0);
        assert_eq!(show - nine_est, TimeDelta::hours(24));
        assert_eq!(pct(nine_est), 100);
    }
}
