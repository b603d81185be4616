//! Property tests of the migrator's parsers of untrusted input: getRecordings answers, the
//! video playback page and the configuration file. Whatever the bytes, each parser returns a
//! value or an error, never panics, and a deeply nested answer is refused instead of
//! overflowing the stack.

use bbb_migrator::api::xml::parse_response;
use bbb_migrator::config::Config;
use bbb_migrator::worker::download::video_sources;
use proptest::prelude::*;

/// Pieces of getRecordings answers (tags, text, entities, broken bits) to shuffle together: far
/// more likely than random text to reach the parser's deeper paths.
fn answer_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("<response>".to_owned()),
        Just("</response>".to_owned()),
        Just("<returncode>SUCCESS</returncode>".to_owned()),
        Just("<returncode>FAILED</returncode><messageKey>k</messageKey>".to_owned()),
        Just("<recordings>".to_owned()),
        Just("</recordings>".to_owned()),
        Just("<recording>".to_owned()),
        Just("</recording>".to_owned()),
        Just("<recordID>0123456789abcdef0123456789abcdef01234567-1700000000000</recordID>".to_owned()),
        Just("<recordID>../../etc</recordID>".to_owned()),
        Just("<startTime>1700000000000</startTime><endTime>-5</endTime>".to_owned()),
        Just("<name><![CDATA[a ]]> b]]></name>".to_owned()),
        Just("<metadata><x-y>&amp;&#x1F600;&#0;&bogus;</x-y></metadata>".to_owned()),
        Just("<playback><format><type>presentation</type><url>file:///etc/passwd</url><length>99999999999999999999</length></format></playback>".to_owned()),
        Just("<playback><format><type>video</type><url>javascript:x</url></format>".to_owned()),
        Just("<totalElements>18446744073709551616</totalElements>".to_owned()),
        Just("<?xml version=\"1.0\"?>".to_owned()),
        Just("<!DOCTYPE x [<!ENTITY a \"aaaa\">]>".to_owned()),
        "[<>/&;#a-z0-9 \"'=-]{0,24}",
    ]
}

proptest! {
    // No failure files written into the source tree: a failure prints its minimal input.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_text_is_an_answer_or_an_error(body in "\\PC{0,400}") {
        let _ = parse_response(&body);
    }

    #[test]
    fn any_mix_of_answer_pieces_is_an_answer_or_an_error(
        pieces in proptest::collection::vec(answer_piece(), 0..80)
    ) {
        let body = pieces.concat();
        if let Ok(r) = parse_response(&body) {
            // What was kept is well-formed: every kept recording has a valid id.
            for rec in &r.recordings {
                prop_assert!(!rec.record_id.to_string().contains('/'));
            }
        }
    }

    #[test]
    fn any_page_gives_sources_or_none(html in "\\PC{0,400}", tags in proptest::collection::vec(
        prop_oneof![
            Just("<video"), Just("<source src="), Just("\"x.m4v\""), Just("'"), Just(">"),
            Just("src=javascript:"), Just("&amp;"), Just("</video>"),
        ], 0..30)) {
        let _ = video_sources(&html);
        let _ = video_sources(&tags.concat());
    }

    #[test]
    fn any_config_text_is_a_config_or_an_error(text in "\\PC{0,300}", keys in proptest::collection::vec(
        prop_oneof![
            Just("[bbb]\n"), Just("[pod]\n"), Just("[ledger]\n"), Just("[moodle.databases.x]\n"),
            Just("secret = \"s\"\n"), Just("playback_hosts = [\"a\", 1]\n"), Just("url = 3\n"),
            Just("lease_secs = -1\n"), Just("= \n"), Just("\"\n"), Just("[[x]]\n"),
        ], 0..20)) {
        let _ = Config::parse(&text);
        let _ = Config::parse(&keys.concat());
    }
}

#[test]
fn a_deeply_nested_answer_is_refused_not_a_stack_overflow() {
    // Balanced: a parser building the whole tree would drop it recursively, 500 000 deep.
    let body = format!(
        "<response><returncode>SUCCESS</returncode>{}{}</response>",
        "<a>".repeat(500_000),
        "</a>".repeat(500_000)
    );
    let e = parse_response(&body).unwrap_err();
    assert!(e.to_string().contains("nested deeper than"), "{e}");
}
