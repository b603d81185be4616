//! Property tests of the recorder's parsers of a recording's own files, which come from the
//! server being migrated and are untrusted: `metadata.xml`, `shapes.svg`, `panzooms.xml` and
//! the playback URL. Whatever the bytes, each returns a value or an error, never panics; slide
//! paths never leave the recording (no `..`, no absolute URL).

use bbb_recorder::playback::{first_panzoom, parse_metadata, parse_url, slide_images};
use proptest::prelude::*;

fn file_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("<recording>".to_owned()),
        Just("</recording>".to_owned()),
        Just("<id>x</id><start_time>17</start_time>".to_owned()),
        Just("<playback><duration>15008</duration></playback>".to_owned()),
        Just("<playback><duration>-1e309</duration></playback>".to_owned()),
        Just("<meta><meetingName><![CDATA[n]]></meetingName></meta>".to_owned()),
        Just("<svg><image in=\"0.0\" out=\"5\" xlink:href=\"presentation/p/slide-1.png\"/>".to_owned()),
        Just("<image in=\"NaN\" xlink:href=\"../../../etc/passwd\"/>".to_owned()),
        Just("<image in=\"1\" href=\"https://evil.test/x.png\"/>".to_owned()),
        Just("<image in=\"-inf\" xlink:href=\"/abs/slide.png\"/>".to_owned()),
        Just("<recording id=\"panzoom_events\"><event timestamp=\"1e400\"><viewBox>0 0 1 1</viewBox></event>".to_owned()),
        Just("<event timestamp=\"0.5\">".to_owned()),
        Just("</event>".to_owned()),
        Just("&#xD800;&amp;&lt;&unknown;".to_owned()),
        "[<>/&;#a-z0-9 \"'=.-]{0,24}",
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
    fn any_text_parses_or_fails_cleanly(text in "\\PC{0,400}") {
        let _ = parse_metadata(&text);
        let _ = slide_images(&text);
        let _ = first_panzoom(&text);
        let _ = parse_url(&text, false);
    }

    #[test]
    fn any_mix_of_file_pieces_parses_or_fails_cleanly(
        pieces in proptest::collection::vec(file_piece(), 0..80)
    ) {
        let text = pieces.concat();
        let _ = parse_metadata(&text);
        let _ = first_panzoom(&text);
        for slide in slide_images(&text) {
            prop_assert!(!slide.href.split('/').any(|s| s == ".."), "{:?}", slide.href);
            prop_assert!(!slide.href.contains("://") && !slide.href.starts_with('/'), "{:?}", slide.href);
            if let Some(t) = slide.shown_at {
                prop_assert!(t.is_finite());
            }
        }
    }
}

#[test]
fn deep_nesting_is_not_a_stack_overflow() {
    let deep = format!("{}{}", "<a>".repeat(200_000), "</a>".repeat(200_000));
    assert!(parse_metadata(&deep).is_err());
    assert!(slide_images(&deep).is_empty());
    assert_eq!(first_panzoom(&deep), None);
}
