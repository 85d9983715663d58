//! The edge's catalog version keys (in the edge's Upstash Redis): every
//! cached catalog read at the edge carries its city's version in its
//! cache key, so an increment makes every older copy unreachable at once.
//! One definition for the Worker, which reads them and bumps them on an
//! operator write through the edge, and the region core, which bumps them
//! on a write sent to it directly.

/// The Redis key of the global catalog version (the city list).
pub const VERSION_KEY: &str = "edge:catalog:v";

/// The Redis key of a city's catalog version; `None`: the global one.
pub fn version_key(city: Option<&str>) -> String {
    match city {
        Some(c) => format!("{VERSION_KEY}:{c}"),
        None => VERSION_KEY.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_city_under_the_global_one() {
        assert_eq!(version_key(None), "edge:catalog:v");
        assert_eq!(version_key(Some("mum")), "edge:catalog:v:mum");
    }
}
