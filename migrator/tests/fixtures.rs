//! Parser, file-name and CSV tests against the real getRecordings responses in
//! `../shared/fixtures/getrecordings` (beside the workspace). Without them these tests fail with a
//! message saying where they were looked for; they never pass silently.

use std::path::PathBuf;

use bbb_migrator::api::xml::parse_response;
use bbb_migrator::place::{ClaimDir, csv, slug};
use bbb_migrator::recording::Recording;
use bbb_migrator::select;
use chrono_tz::Tz;

fn fixture(name: &str) -> String {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/getrecordings"
    ));
    let path = dir.join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "fixture {} is missing ({e}): these tests need ../shared/fixtures beside the workspace",
            path.display()
        )
    })
}

fn parse(name: &str) -> Vec<Recording> {
    let r = parse_response(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(r.malformed.is_empty(), "{name}: {:?}", r.malformed);
    r.recordings
}

fn paris() -> Tz {
    "Europe/Paris".parse().unwrap()
}

#[test]
fn bbb_common_web_sample_crlf_cyrillic_entities_and_collisions() {
    let body = fixture("bbb-common-web_sample-get-recordings-response.xml");
    assert!(
        body.contains("\r\n"),
        "the fixture is the byte-exact CRLF one"
    );
    let mut recs = parse("bbb-common-web_sample-get-recordings-response.xml");
    assert_eq!(recs.len(), 8);
    let cyr = recs
        .iter()
        .find(|r| r.name == "тест")
        .expect("Cyrillic name");
    assert_eq!(
        slug::file_stem(&cyr.name, cyr.start_time_ms, paris()),
        "2017-08-30"
    );
    let lets = recs.iter().find(|r| r.name.starts_with("Let")).unwrap();
    assert_eq!(lets.name, "Let&#39;s Talk English: Episode 5");
    assert_eq!(
        slug::file_stem(&lets.name, lets.start_time_ms, paris()),
        "let39s-talk-english-episode-5-2017-08-30"
    );
    assert!(recs.iter().all(|r| r.record_id.is_canonical()));
    assert!(
        recs.iter()
            .all(|r| r.internal_meeting_id == r.record_id.as_str())
    );
    assert_eq!(recs[0].meta("meetingName"), "тест");

    // Two "Prueba 2" and two "English 101" on the same day: same Python name, distinct names here.
    select::sort(&mut recs);
    let dir = tempfile::tempdir().unwrap();
    let cd = ClaimDir {
        dir: dir.path().to_path_buf(),
        temp_dir: dir.path().join("t"),
    };
    let mut taken: Vec<PathBuf> = Vec::new();
    for r in &recs {
        let stem = slug::file_stem(&r.name, r.start_time_ms, paris());
        let name = cd
            .candidates(&stem, &r.record_id, "webm")
            .into_iter()
            .find(|c| !taken.contains(c))
            .unwrap();
        taken.push(name);
    }
    let names: Vec<String> = taken
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains(&"prueba-2-2017-08-30.webm".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"prueba-2-2017-08-30-b27af2f9.webm".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"english-101-2017-08-30.webm".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"english-101-2017-08-30-6e35e3b2.webm".to_owned()),
        "{names:?}"
    );
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 8);

    // The entity-bearing name is quoted in the CSV because "&#39;" holds a ';'.
    let out = String::from_utf8(csv::export(&recs, paris(), true)).unwrap();
    assert!(
        out.contains("\r\n\"Let&#39;s Talk English: Episode 5\";;2017-08-30;"),
        "{out}"
    );
    // 2.0 URLs rewritten to 2.3 with the query kept (spec 4.4).
    assert!(out.contains(
        "/playback/presentation/2.3/bc04628ab61776c9f65c695dc59f36abf8955bbc-1504087272607?meetingId=bc04628ab61776c9f65c695dc59f36abf8955bbc-1504087272607\r\n"
    ));
}

#[test]
fn api_php_moodle_sample_without_internal_meeting_id_and_cdata() {
    let recs = parse("bbb-api-php_get_recordings_moodle.xml");
    assert_eq!(
        recs.len(),
        6,
        "none skipped: Pod's parser crashed on 5 of them"
    );
    let missing = recs
        .iter()
        .filter(|r| r.internal_meeting_id == r.record_id.as_str())
        .count();
    assert_eq!(missing, 6, "5 fall back to recordID, 1 has it equal");
    let first = recs
        .iter()
        .find(|r| r.record_id.as_str().ends_with("1462807897120"))
        .unwrap();
    assert_eq!(first.name, "SAT- Writing-Humanities (All participants)");
    assert_eq!(first.meta("bbb-origin-server-name"), "planetinteractive.us");
    assert_eq!(first.meta("bbb-recording-description"), "");
    // 0.9.0 URLs are never rewritten.
    let url = first.presentation_url(true).unwrap();
    assert!(
        url.contains("/playback/presentation/0.9.0/playback.html?meetingId="),
        "{url}"
    );
    assert_eq!(first.video_url(), None);
    assert_eq!(first.length_secs(), Some(532 * 60));
    // Whitespace before CDATA (Pod read it as empty): full text content is read.
    for r in &recs {
        assert!(!r.name.is_empty(), "{}: empty name", r.record_id);
    }
}

#[test]
fn no_recordings_is_an_empty_success() {
    let r = parse_response(&fixture("bbb-api-php_get_recordings_no_recordings.xml")).unwrap();
    assert!(r.recordings.is_empty());
    assert_eq!(r.message_key, "noRecordings");
}

#[test]
fn bbb_docs_example() {
    let recs = parse("bbb-docs_getRecordings_example.xml");
    assert!(!recs.is_empty());
    let fred = recs
        .iter()
        .find(|r| r.record_id.as_str() == "ffbfc4cc24428694e8b53a4e144f414052431693-1530718721124")
        .unwrap();
    assert_eq!(fred.name, "Fred's Room");
    assert_eq!(
        slug::file_stem(&fred.name, fred.start_time_ms, paris()),
        "freds-room-2018-07-04"
    );
    assert_eq!(
        slug::file_stem(&fred.name, fred.start_time_ms, Tz::UTC),
        "freds-room-2018-07-04"
    );
    // podcast is not a playback we migrate; the presentation is.
    assert!(fred.formats.iter().any(|f| f.kind == "podcast"));
    assert!(fred.presentation_url(true).unwrap().contains("/2.3/"));
}

#[test]
fn synthetic_scalelite_sample_csv_is_byte_exact() {
    let mut recs = parse("SYNTHETIC_scalelite-style_video_and_presentation.xml");
    select::sort(&mut recs);
    let got = csv::export(&recs, paris(), true);
    let want = "meeting_name;recording_name;start_date;origin;origin_server_name;origin_version;origin_context;origin_id;origin_label;description;published;state;source_url\r\n\
Cours de Mathématiques — L1 (groupe A);Cours de Mathématiques;2024-03-13;Moodle;moodle.univ.example;4.1.2 (Build: 20230313);Mathématiques L1;12;MATH-L1;;true;published;https://scalelite.univ.example/playback/video/0c1a6e3c2b7a9d3f1e2d4c5b6a79880716253443-1710325200000/\r\n\
Revue de projet;;2024-02-27;;;;;;;;false;unpublished;https://scalelite.univ.example/playback/presentation/2.3/7f3e2d1c0b9a8f7e6d5c4b3a2918070605040302-1709046000000?meetingId=7f3e2d1c0b9a8f7e6d5c4b3a2918070605040302-1709046000000\r\n";
    assert_eq!(String::from_utf8(got.clone()).unwrap(), want);
    assert!(!got.starts_with(&[0xef, 0xbb, 0xbf]), "no BOM");
    // The video playback wins for the claim; the unpublished one records its presentation.
    assert_eq!(
        slug::file_stem(&recs[0].name, recs[0].start_time_ms, paris()) + ".m4v",
        "cours-de-mathematiques-l1-groupe-a-2024-03-13.m4v"
    );
    assert_eq!(recs[1].length_secs(), Some(3600));
    // Without the rewrite the 2.0 URL is kept as is.
    let raw = csv::row(&recs[1], paris(), false);
    assert!(raw[12].contains("/2.0/playback.html?meetingId="));
}
