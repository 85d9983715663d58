//! ERROR means an operator must act. Answers the system gives by design
//! under faults (503 `payment_pending` while the gateway is failing, 409
//! conflicts) are logged below ERROR; this test captures the region core's
//! log while it gives them. (Before `http_log`, tower-http's trace layer
//! logged every 5xx at ERROR.)

use e2e::money::checkout;
use e2e::{user, TestApp};
use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;

/// A log sink the test can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().expect("log lock").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_503s_are_not_logged_as_errors() {
    let log = Captured::default();
    tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .init();

    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(1, 10, chrono::Duration::days(3))
        .await
        .expect("show");
    let hold = app.hold_id("alice", &show, &["A1"]).await;

    // A gateway answering 5xx: the buyer is told to retry (503
    // payment_pending), which is the design working.
    let pending = checkout(&app, &user("alice"), &hold, "k1", "pm_fault_5xx")
        .await
        .expect("checkout");
    assert_eq!((pending.status, pending.code()), (503, "payment_pending"));
    // A conflict (the seat is held by alice) is a 409, an ordinary answer.
    let (s, _) = app.hold(&user("bob"), &show, &["A1"]).await.expect("hold");
    assert_eq!(s, 409);
    app.stop().await;

    let lines = log.lines();
    let errors: Vec<&String> = lines.iter().filter(|l| l.contains(" ERROR ")).collect();
    assert!(
        errors.is_empty(),
        "expected answers logged at ERROR: {errors:#?}"
    );
    // The 503 is still visible to an operator, at WARN.
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" WARN ") && l.contains("status=503")),
        "the 503 is logged at WARN: {lines:#?}"
    );
}
