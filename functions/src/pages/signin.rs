//! `/signin`: the development sign-in (an e-mail address, nothing else),
//! on only where `DEV_SIGNIN` is `"true"`. Elsewhere the page says how
//! sign-in works there (see docs/edge.md: an OpenID Connect provider).

use super::layout::{csrf_field, document, escape, Shell, Viewer};

/// The sign-in page.
pub struct SignInPage<'a> {
    /// Development sign-in is on.
    pub enabled: bool,
    /// The form's token.
    pub csrf: &'a str,
    /// What was typed (shown again after a mistake).
    pub email: &'a str,
    /// Where to go once signed in (a path of ours).
    pub next: &'a str,
    /// What was wrong.
    pub error: Option<&'a str>,
}

/// The document.
pub fn render(p: &SignInPage<'_>, viewer: Viewer<'_>) -> String {
    let mut main = String::from("<h1>Sign in</h1>\n");
    if !p.enabled {
        main.push_str("<p>Signing in with an e-mail address alone is only for development and is switched off here.</p>\n");
    } else {
        if let Some(e) = p.error {
            main.push_str(&format!(
                "<p class=\"error\" id=\"email-error\" role=\"alert\">{}</p>\n",
                escape(e)
            ));
        }
        let described = if p.error.is_some() {
            " aria-describedby=\"email-error\" aria-invalid=\"true\""
        } else {
            ""
        };
        main.push_str(&format!(
            "<p>Development sign-in: no password, your e-mail address is your account.</p>\n\
             <form method=\"post\" action=\"/signin\">{}\n\
             <input type=\"hidden\" name=\"next\" value=\"{}\">\n\
             <p><label for=\"email\">E-mail address</label>\n\
             <input type=\"email\" id=\"email\" name=\"email\" autocomplete=\"email\" required value=\"{}\"{described}></p>\n\
             <p><button type=\"submit\" class=\"primary\">Sign in</button></p>\n</form>\n",
            csrf_field(p.csrf),
            escape(p.next),
            escape(p.email)
        ));
    }
    document(&Shell {
        title: "Sign in",
        viewer,
        main,
        ..Shell::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::layout::tests::assert_page_rules;

    #[test]
    fn a_labelled_form_with_its_token() {
        let html = render(
            &SignInPage {
                enabled: true,
                csrf: "c",
                email: "x\"",
                next: "/c/mum",
                error: Some("bad"),
            },
            Viewer::default(),
        );
        assert!(html.contains("<label for=\"email\">"));
        assert!(html.contains("value=\"x&quot;\""));
        assert!(html.contains("aria-invalid=\"true\""));
        assert_page_rules(&html);
        let off = render(
            &SignInPage {
                enabled: false,
                csrf: "c",
                email: "",
                next: "/",
                error: None,
            },
            Viewer::default(),
        );
        assert!(!off.contains("<form method=\"post\" action=\"/signin\""));
    }
}
