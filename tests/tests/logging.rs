//! What the broker writes to its standard output when that is a file, not a terminal.

use strata_tests::{error_code, record_batch, Broker};

#[test]
fn logs_written_to_a_file_carry_no_colour_codes() {
    let mut broker = Broker::start();
    let mut conn = broker.connect();
    // Auto-creation logs a line with fields, which the formatter would colour.
    let produced = conn.produce("logging", 0, -1, record_batch(&[b"x"]).freeze());
    assert_eq!(produced.error_code, error_code::NONE);
    broker.assert_alive();
    let log = broker.log();
    assert!(log.contains("strata is ready"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in the log:\n{log}");
}
