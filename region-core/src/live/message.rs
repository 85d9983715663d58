//! What `SEATMAP_UPDATE_LUA` publishes on a show's live channel, parsed:
//! `"<seq> <ordinal>:<state>,…"` for numbered changes, `"<seq> R"` when
//! the map was missing (viewers must resynchronise). Pure.

use shared::SeatState;

/// One numbered message of a show's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Change `seq`: these seats now have these states.
    Changes {
        /// The change number.
        seq: u64,
        /// (ordinal, new state).
        changes: Vec<(u32, SeatState)>,
    },
    /// Change `seq` touched a map Redis did not have: every copy is stale.
    Resync {
        /// The change number.
        seq: u64,
    },
}

impl Published {
    /// The change number.
    pub fn seq(&self) -> u64 {
        match self {
            Self::Changes { seq, .. } | Self::Resync { seq } => *seq,
        }
    }
}

/// Parses one message; None if it is not one of ours (never trusted
/// blindly: the channel is on a Redis other programs may use).
pub fn parse(text: &str) -> Option<Published> {
    let (seq, rest) = text.split_once(' ')?;
    let seq: u64 = seq.parse().ok().filter(|s| *s > 0)?;
    if rest == "R" {
        return Some(Published::Resync { seq });
    }
    let changes = rest
        .split(',')
        .map(|pair| {
            let (o, s) = pair.split_once(':')?;
            let state = match s {
                "0" => SeatState::Available,
                "1" => SeatState::Held,
                "2" => SeatState::Booked,
                _ => return None,
            };
            Some((o.parse().ok()?, state))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Published::Changes { seq, changes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_and_resyncs_parse() {
        assert_eq!(
            parse("42 3:1,17:2,0:0"),
            Some(Published::Changes {
                seq: 42,
                changes: vec![
                    (3, SeatState::Held),
                    (17, SeatState::Booked),
                    (0, SeatState::Available)
                ],
            })
        );
        assert_eq!(parse("7 R"), Some(Published::Resync { seq: 7 }));
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "", "42", "0 R", "x R", "42 ", "42 3", "42 3:9", "42 -1:1", "42 3:1,", "42 a:1",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
