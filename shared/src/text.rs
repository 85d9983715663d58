//! Validation of free text that crosses a boundary (names, e-mail
//! addresses, token subjects, titles): one rule for the edge and the
//! region core, so both refuse the same input with the same message.
//!
//! Text is refused when it is empty (after trimming) or longer than its
//! field allows (counted in characters, not bytes), or when it holds a
//! control character. NUL is the dangerous one: Postgres cannot store it in
//! `text` and answers with an error that used to surface as a 500; other C0
//! and C1 controls (bare CR, escape, DEL, …) forge log lines and break
//! headers and e-mail. Invalid UTF-8 never gets this far: `&str` is valid
//! by construction, and the JSON and header decoders refuse bad bytes.

/// Why a text field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Empty or only whitespace.
    #[error("{field} must not be empty")]
    Empty {
        /// The field's name as the client spells it.
        field: &'static str,
    },
    /// More characters than the field allows.
    #[error("{field} must be at most {max} characters")]
    TooLong {
        /// The field's name as the client spells it.
        field: &'static str,
        /// The most characters allowed.
        max: usize,
    },
    /// Holds a control character (NUL, CR, LF, escape, DEL, C1 …).
    #[error("{field} must not contain control characters")]
    ControlCharacter {
        /// The field's name as the client spells it.
        field: &'static str,
    },
    /// Clean text, but not in the field's shape (an e-mail without `@`).
    #[error("{field} must be {expected}")]
    Malformed {
        /// The field's name as the client spells it.
        field: &'static str,
        /// What the field must look like.
        expected: &'static str,
    },
}

impl TextError {
    /// The name of the field that was refused.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Empty { field }
            | Self::TooLong { field, .. }
            | Self::ControlCharacter { field }
            | Self::Malformed { field, .. } => field,
        }
    }
}

/// Longest name of a city, venue, screen, movie or seat category.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest e-mail address (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Longest token subject (user id).
pub const MAX_SUBJECT_CHARS: usize = 200;
/// Longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// Checks one line of text: 1 to `max_chars` characters, not all
/// whitespace, no control characters.
pub fn check_line(field: &'static str, value: &str, max_chars: usize) -> Result<(), TextError> {
    if value.chars().any(char::is_control) {
        return Err(TextError::ControlCharacter { field });
    }
    if value.trim().is_empty() {
        return Err(TextError::Empty { field });
    }
    if value.chars().count() > max_chars {
        return Err(TextError::TooLong {
            field,
            max: max_chars,
        });
    }
    Ok(())
}

/// Checks optional text: `None` passes, `Some` must pass [`check_line`].
pub fn check_optional_line(
    field: &'static str,
    value: Option<&str>,
    max_chars: usize,
) -> Result<(), TextError> {
    value.map_or(Ok(()), |v| check_line(field, v, max_chars))
}

/// Checks an e-mail address: a line of at most [`MAX_EMAIL_CHARS`] with
/// one `@` that has something on both sides and no whitespace. (Deliverability
/// is the mail server's business; this only keeps garbage out.)
pub fn check_email(field: &'static str, value: &str) -> Result<(), TextError> {
    check_line(field, value, MAX_EMAIL_CHARS)?;
    let well_formed = value.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@')
    }) && !value.chars().any(char::is_whitespace);
    if well_formed {
        Ok(())
    } else {
        Err(TextError::Malformed {
            field,
            expected: "an e-mail address like name@example.com",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_passes_whatever_the_script() {
        for ok in [
            "Mumbai",
            "PVR: Juhu",
            "Amélie",
            "東京",
            "Ciné 3 — IMAX",
            "a",
        ] {
            assert_eq!(check_line("name", ok, 200), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn control_characters_are_refused_naming_the_field() {
        for bad in [
            "a\0b",
            "\0",
            "a\rb",
            "line\nbreak",
            "tab\there",
            "\u{1b}[31m",
            "del\u{7f}",
            "c1\u{85}",
        ] {
            let e = check_line("venue.name", bad, 200).unwrap_err();
            assert_eq!(
                e,
                TextError::ControlCharacter {
                    field: "venue.name"
                },
                "{bad:?}"
            );
            assert!(e.to_string().starts_with("venue.name "));
        }
    }

    #[test]
    fn empty_and_long_are_refused() {
        assert_eq!(check_line("f", "", 3), Err(TextError::Empty { field: "f" }));
        assert_eq!(
            check_line("f", "   ", 3),
            Err(TextError::Empty { field: "f" })
        );
        // Characters, not bytes: three two-byte characters fit in three.
        assert_eq!(check_line("f", "ééé", 3), Ok(()));
        assert_eq!(
            check_line("f", "éééé", 3),
            Err(TextError::TooLong { field: "f", max: 3 })
        );
        assert_eq!(check_optional_line("f", None, 3), Ok(()));
        assert!(check_optional_line("f", Some("\0"), 3).is_err());
    }

    #[test]
    fn email_needs_one_at_and_no_spaces() {
        assert_eq!(check_email("email", "fan@example.com"), Ok(()));
        for bad in [
            "",
            "fan",
            "@example.com",
            "fan@",
            "a@b@c",
            "fan @x.com",
            "fan@x.com\0",
        ] {
            assert!(check_email("email", bad).is_err(), "{bad:?}");
        }
    }
}
