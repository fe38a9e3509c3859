//! Flags given values runboard cannot use are refused at the start with exit code 2 and a
//! message naming the flag, never a panic later.

use crate::runs::{runboard, stderr};

#[tokio::test]
async fn seconds_a_duration_cannot_hold_are_refused_with_a_message() {
    let cases: [&[&str]; 6] = [
        &["serve", "--lease-secs", "1e300"],
        &["serve", "--upstream-idle-secs", "inf"],
        &["serve", "--slow-subscriber-secs", "1e20"],
        &["serve", "--retain-every-secs", "NaN"],
        &[
            "record",
            "--api",
            "http://127.0.0.1:1",
            "-o",
            "/dev/null",
            "--duration",
            "1e300",
        ],
        &["--after", "1e300", "--screenshot", "/dev/null"],
    ];
    for args in cases {
        let output = runboard(args).await;
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains("expected seconds"), "{args:?}: {text}");
        assert!(!text.contains("panicked"), "{args:?}: {text}");
        let flag = args
            .iter()
            .find(|arg| arg.starts_with("--") && **arg != "--api");
        assert!(
            text.contains(flag.unwrap()),
            "{args:?} names its flag: {text}"
        );
    }
}
