//! `/search?q=`: titles across every city, from the global catalog
//! (misspellings tolerated there), each with links to the cities that
//! still show it. The form is on the home page too.

use std::fmt::Write as _;

use shared::api::{City, MovieKind, SearchResults};

use super::layout::{document, escape, Shell, Viewer};

/// The search form (a GET: nothing changes, so no CSRF token).
pub fn form(query: &str) -> String {
    format!(
        "<form method=\"get\" action=\"/search\" role=\"search\" class=\"search\">\n\
         <label for=\"q\">Search films and events in every city</label>\n\
         <input type=\"search\" id=\"q\" name=\"q\" maxlength=\"100\" required value=\"{}\">\n\
         <button type=\"submit\">Search</button>\n</form>\n",
        escape(query)
    )
}

/// The results page: `results` is `None` before anything was asked.
pub fn render(results: Option<&SearchResults>, cities: &[City], viewer: Viewer<'_>) -> String {
    let query = results.map_or("", |r| r.query.as_str());
    let mut main = String::from("<h1>Search</h1>\n");
    main.push_str(&form(query));
    let mut status = None;
    if let Some(r) = results {
        if r.hits.is_empty() {
            let _ = writeln!(
                main,
                "<p>Nothing found for “{}”. Check the spelling, or try one word of the title.</p>",
                escape(query)
            );
            status = Some(format!("Nothing found for {query}"));
        } else {
            let _ = writeln!(
                main,
                "<h2>Results for “{}”</h2>\n<ul class=\"shows\">",
                escape(query)
            );
            for hit in &r.hits {
                let m = &hit.movie;
                let kind = match m.kind {
                    MovieKind::Movie => "Film",
                    MovieKind::Event => "Live event",
                };
                let language = m
                    .language
                    .as_deref()
                    .map(|l| format!(" · {}", escape(l)))
                    .unwrap_or_default();
                let _ = write!(
                    main,
                    "<li class=\"show\"><h3>{}</h3><p>{kind} · {} min{language}</p>",
                    escape(&m.title),
                    m.duration_minutes
                );
                if hit.cities.is_empty() {
                    main.push_str("<p>Not showing in any city right now.</p>");
                } else {
                    main.push_str("<p>Showing in: ");
                    let links: Vec<String> = hit
                        .cities
                        .iter()
                        .map(|code| {
                            let name = cities
                                .iter()
                                .find(|c| c.code.as_str() == code)
                                .map_or(code.as_str(), |c| c.name.as_str());
                            format!("<a href=\"/c/{}\">{}</a>", escape(code), escape(name))
                        })
                        .collect();
                    main.push_str(&links.join(", "));
                    main.push_str("</p>");
                }
                main.push_str("</li>\n");
            }
            main.push_str("</ul>\n");
            status = Some(format!("{} results for {query}", r.hits.len()));
        }
    }
    document(&Shell {
        title: "Search",
        viewer,
        main,
        status,
        ..Shell::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::layout::tests::assert_page_rules;
    use shared::api::{Movie, SearchHit};
    use shared::CityCode;

    #[test]
    fn hits_link_to_their_cities_escaped() {
        let results = SearchResults {
            query: "intrstellar <b>".into(),
            hits: vec![
                SearchHit {
                    movie: Movie {
                        id: uuid::Uuid::nil(),
                        title: "Interstellar <&>".into(),
                        duration_minutes: 169,
                        language: Some("en".into()),
                        kind: MovieKind::Movie,
                    },
                    score: 0.6,
                    cities: vec!["mum".into(), "nyc".into()],
                },
                SearchHit {
                    movie: Movie {
                        id: uuid::Uuid::nil(),
                        title: "Interstellar Live".into(),
                        duration_minutes: 120,
                        language: None,
                        kind: MovieKind::Event,
                    },
                    score: 0.4,
                    cities: vec![],
                },
            ],
        };
        let cities = [City {
            code: CityCode::parse("mum").unwrap(),
            name: "Mumbai".into(),
        }];
        let html = render(Some(&results), &cities, Viewer::default());
        assert!(
            html.contains("<h3>Interstellar &lt;&amp;&gt;</h3>"),
            "{html}"
        );
        assert!(html.contains("<a href=\"/c/mum\">Mumbai</a>, <a href=\"/c/nyc\">nyc</a>"));
        assert!(html.contains("Live event · 120 min"));
        assert!(html.contains("Not showing in any city right now."));
        assert!(html.contains("value=\"intrstellar &lt;b&gt;\""), "{html}");
        assert!(!html.contains("<b>"));
        assert_page_rules(&html);

        let none = SearchResults {
            query: "zzz".into(),
            hits: vec![],
        };
        let html = render(Some(&none), &cities, Viewer::default());
        assert!(html.contains("Nothing found for “zzz”"), "{html}");
        assert_page_rules(&html);
        assert_page_rules(&render(None, &cities, Viewer::default()));
    }
}
