//! `/`: the cities the edge routes, each a link to its shows.

use std::fmt::Write as _;

use shared::api::City;

use super::layout::{document, escape, Shell, Viewer};

/// The home page.
/// `search`: the deployment has a global catalog to search.
pub fn render(cities: &[City], search: bool, viewer: Viewer<'_>) -> String {
    let mut main = String::from("<h1>Choose your city</h1>\n");
    if search {
        main.push_str(&super::search::form(""));
    }
    if cities.is_empty() {
        main.push_str("<p>No city is selling tickets yet.</p>\n");
    } else {
        main.push_str("<ul class=\"cards\">\n");
        for c in cities {
            let _ = writeln!(
                main,
                "<li><a href=\"/c/{code}\">{name}</a></li>",
                code = escape(c.code.as_str()),
                name = escape(&c.name)
            );
        }
        main.push_str("</ul>\n");
    }
    document(&Shell {
        title: "Cities",
        viewer,
        main,
        ..Shell::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::layout::tests::assert_page_rules;
    use shared::CityCode;

    #[test]
    fn lists_cities_escaped() {
        let cities = [City {
            code: CityCode::parse("mum").unwrap(),
            name: "Mumbai <&>".into(),
        }];
        let html = render(&cities, false, Viewer::default());
        assert!(!html.contains("action=\"/search\""));
        let with_search = render(&cities, true, Viewer::default());
        assert!(with_search.contains("<form method=\"get\" action=\"/search\""));
        assert_page_rules(&with_search);
        assert!(
            html.contains("<a href=\"/c/mum\">Mumbai &lt;&amp;&gt;</a>"),
            "{html}"
        );
        assert_page_rules(&html);
    }
}
