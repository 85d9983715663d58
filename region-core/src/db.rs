//! Database helpers every store shares: the Postgres error codes the
//! service acts on, read in one place.

/// Postgres error codes (SQLSTATE) we act on.
pub mod codes {
    /// `unique_violation`: a row with this key exists.
    pub const UNIQUE_VIOLATION: &str = "23505";
    /// `lock_not_available`: NOWAIT met a locked row.
    pub const LOCK_NOT_AVAILABLE: &str = "55P03";
    /// `deadlock_detected`.
    pub const DEADLOCK: &str = "40P01";
    /// `serialization_failure`.
    pub const SERIALIZATION: &str = "40001";
}

/// The SQLSTATE of a database error, if any.
pub fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

/// The name of the constraint a database error violated, if any.
pub fn constraint_of(e: &sqlx::Error) -> Option<&str> {
    e.as_database_error().and_then(|d| d.constraint())
}

/// Whether `e` is a unique-key violation (a concurrent insert of the same
/// key won).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    sqlstate(e).as_deref() == Some(codes::UNIQUE_VIOLATION)
}

/// How a status enum is spelled in its text column (what the query macros
/// bind), so tests can pin each enum to its column's CHECK list.
#[cfg(test)]
pub fn spelling<T>(value: T) -> String
where
    T: for<'q> sqlx::Encode<'q, sqlx::Postgres>,
{
    let mut buf = sqlx::postgres::PgArgumentBuffer::default();
    let null = value.encode_by_ref(&mut buf).expect("encodes");
    assert!(
        matches!(null, sqlx::encode::IsNull::No),
        "a status is never NULL"
    );
    String::from_utf8(buf.to_vec()).expect("text")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_without_a_database_code_have_no_sqlstate() {
        let e = sqlx::Error::RowNotFound;
        assert_eq!(sqlstate(&e), None);
        assert!(!is_unique_violation(&e));
    }
}
