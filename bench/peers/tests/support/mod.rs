//! What the peers' smoke tests share: a fan-out run through a peer's
//! `Protocol`, and the checks that it lost, duplicated and reordered
//! nothing.

use std::time::Duration;

use talk_bench::{FanoutConfig, Protocol, Scenario, Target};

/// Runs a fan-out of `messages` to `pollers` through `P` against `target`,
/// a message every `interval`, and fails the test unless every poller got
/// every message once, in order, with no error.
pub(crate) async fn fanout_loses_nothing<P: Protocol>(
    target: &Target,
    pollers: usize,
    messages: u64,
    interval: Duration,
) {
    let scenario = Scenario::Fanout(FanoutConfig {
        pollers,
        messages,
        interval,
    });
    let outcome = tokio::time::timeout(
        Duration::from_secs(120),
        talk_bench::run::<P>(target, &scenario),
    )
    .await
    .expect("the run ends within 2 minutes")
    .expect("the run completes");
    eprintln!("{}", outcome.summary);
    let json: serde_json::Value = serde_json::from_str(&outcome.json).unwrap();
    let result = &json["result"];
    assert_eq!(json["peer"], P::NAME);
    assert_eq!(result["ready"], pollers);
    assert_eq!(result["sends"]["acked"], messages);
    assert_eq!(result["expected_deliveries"], messages * pollers as u64);
    assert_eq!(result["deliveries"], messages * pollers as u64);
    for counter in ["missing", "duplicates", "out_of_order", "resets"] {
        assert_eq!(result["completeness"][counter], 0, "{counter}");
    }
    assert_eq!(result["errors"], serde_json::json!({}));
    assert!(outcome.clean, "{}", outcome.summary);
}
