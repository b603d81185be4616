//! Tests of the fake server's getRecordings API: checksums, the response shape, filters,
//! pagination and synthetic recordings, through a real HTTP client on 127.0.0.1.

mod fake_bbb_common;

use fake_bbb::{ApiPlayback, ApiRecording, ChecksumAlgorithm, FakeBbb, PlaybackUrl, checksum};
use fake_bbb_common::*;

/// Known checksums with the BBB example secret (the library default), one per algorithm and query.
/// SHA-1 values are those of pod-migration-spec.md §3.1; all were computed outside this code, with
/// coreutils: `printf %s 'getRecordings<query><secret>' | sha256sum` (sha1sum, sha384sum,
/// sha512sum), BBB's rule hex(HASH(call name + query string + secret)).
const KNOWN_VECTORS: [(ChecksumAlgorithm, &str, &str); 12] = [
    (
        ChecksumAlgorithm::Sha1,
        "",
        "2d8ec9f1d49ac91a5068c0914bb414a9d83142c6",
    ),
    (
        ChecksumAlgorithm::Sha1,
        "offset=0&limit=100",
        "195c230d70c9dc7bdf4e4ca9f63fd32e16c41409",
    ),
    (
        ChecksumAlgorithm::Sha1,
        "recordID=0",
        "7acc2bbbe0d0c3130ef3e59916b547a3749b6022",
    ),
    (
        ChecksumAlgorithm::Sha256,
        "",
        "ff87a566827fe603090c7ec37bc5c14c38d9e104219b57becbdcd3ed9e99dcd3",
    ),
    (
        ChecksumAlgorithm::Sha256,
        "offset=0&limit=100",
        "72b6518292432d29c7a00f362f60f7b5235565eddeab363657acfce2ca15da63",
    ),
    (
        ChecksumAlgorithm::Sha256,
        "recordID=0",
        "9b8d60b6731fe91d147bda1292804f78cb3c3471c4e1dc47832da57f91fde2d8",
    ),
    (
        ChecksumAlgorithm::Sha384,
        "",
        "c10f091ba8a3bc710630f67f692f0776f3c2cc087d9931569100e92b3439948144b1e40a740d5952b37a0ef1987a11e2",
    ),
    (
        ChecksumAlgorithm::Sha384,
        "offset=0&limit=100",
        "98c22e9dc8b0b8b9d62587920d4f9e8d8e799b2f4aeb8214e010d3a1c96b211113add674823eb2761dbb02eb119d6347",
    ),
    (
        ChecksumAlgorithm::Sha384,
        "recordID=0",
        "9a2ee38fbae4fc8a2beec03f33ea83bea57e5266733183575697c3b2061ac3b755e45ed3c104cae07ca7850901ccd68e",
    ),
    (
        ChecksumAlgorithm::Sha512,
        "",
        "b153adb97c531d6c8cc804e4870aa3e9a59276f98881a94b17917e62e2aa67ec5233b5fc0a636a0ad2c3202c300f8fbeda00eccba97821580877fd283844be8f",
    ),
    (
        ChecksumAlgorithm::Sha512,
        "offset=0&limit=100",
        "dc85138bf47cf7b7dff18f1243a68c1fd572615100234e7f0e8c8011c6329c4e5609833b9c18765116d64e37912c1ecb768a5e09f0ded5a811a217e50156775c",
    ),
    (
        ChecksumAlgorithm::Sha512,
        "recordID=0",
        "15324a1fd6a46e0913cc76b2d90157d6f0c60318d7958e19f7bddc46cc35292ff601d3d5364224c67012e2404115c5a4c49126aab569e4ce651f5451cbc6295f",
    ),
];

#[tokio::test]
async fn known_vectors_of_every_algorithm_are_accepted() {
    let bbb = FakeBbb::builder().start().await.unwrap();
    let api = bbb.api_url();
    for (alg, query, sum) in KNOWN_VECTORS {
        let sep = if query.is_empty() { "" } else { "&" };
        let (status, body) =
            get_text(&format!("{api}getRecordings?{query}{sep}checksum={sum}")).await;
        assert_eq!(status, 200);
        assert_eq!(
            texts(&body, "returncode"),
            ["SUCCESS"],
            "{alg:?} {query:?}: {body}"
        );
        // The server signs with the same rule.
        assert_eq!(
            checksum(alg, "getRecordings", query, bbb.secret()),
            sum,
            "{alg:?} {query:?}"
        );
        // One digit off is refused: the server really compares with this value.
        let last = if sum.ends_with('0') { '1' } else { '0' };
        let off = format!("{}{last}", &sum[..sum.len() - 1]);
        let (_, body) = get_text(&format!("{api}getRecordings?{query}{sep}checksum={off}")).await;
        assert_eq!(
            texts(&body, "messageKey"),
            ["checksumError"],
            "{alg:?} {query:?}"
        );
    }
}

/// A query with escapes and a plus sign, signed as sent (coreutils, as above, secret "s3cret").
#[tokio::test]
async fn known_vectors_of_an_escaped_query_are_accepted() {
    let bbb = FakeBbb::builder().secret("s3cret").start().await.unwrap();
    let query = "meetingID=a%20b+c&state=any";
    for (alg, sum) in [
        (
            ChecksumAlgorithm::Sha1,
            "1c452691d7760b4edd2b5c5c6d6a64481378d239",
        ),
        (
            ChecksumAlgorithm::Sha256,
            "34f8f8c07edeb300e0a0255cde984c66f033b748f1549095972f84d77d7b77ec",
        ),
        (
            ChecksumAlgorithm::Sha384,
            "cdb2deec71e917fc5f1d13a0ad030c0410c4843ad186f09bc2695197b80f12eb13f4c7d089a30cfb4ed14150a082d0dd",
        ),
        (
            ChecksumAlgorithm::Sha512,
            "e0e8835f434c71f54ced47213210ef04e909e11a7af91e317157ba64393ce1723613f137bb7c615a4d998efa300a1c3a3e1f73846dbf45e3cf3a9b60896b6b3a",
        ),
    ] {
        assert_eq!(
            checksum(alg, "getRecordings", query, "s3cret"),
            sum,
            "{alg:?}"
        );
        let (_, body) = get_text(&format!(
            "{}getRecordings?{query}&checksum={sum}",
            bbb.api_url()
        ))
        .await;
        assert_eq!(texts(&body, "returncode"), ["SUCCESS"], "{alg:?}: {body}");
    }
}

#[tokio::test]
async fn every_algorithm_is_accepted_and_bad_checksums_rejected() {
    let bbb = FakeBbb::builder().secret("s3cret").start().await.unwrap();
    let failed = "<response><returncode>FAILED</returncode><messageKey>checksumError</messageKey>\
                  <message>Checksums do not match</message></response>";
    let query = "meetingID=a%20b+c&state=any";
    for alg in ChecksumAlgorithm::ALL {
        let sum = checksum(alg, "getRecordings", query, "s3cret");
        assert_eq!(sum.len(), alg.hex_len());
        let (_, body) = get_text(&format!(
            "{}getRecordings?{query}&checksum={sum}",
            bbb.api_url()
        ))
        .await;
        assert_eq!(texts(&body, "returncode"), ["SUCCESS"], "{alg:?}");
        // The checksum may come first: it is removed wherever it is.
        let (_, body) = get_text(&format!(
            "{}getRecordings?checksum={sum}&{query}",
            bbb.api_url()
        ))
        .await;
        assert_eq!(texts(&body, "returncode"), ["SUCCESS"], "{alg:?} first");
    }
    let good = checksum(ChecksumAlgorithm::Sha256, "getRecordings", query, "s3cret");
    let bad_cases = [
        // Missing.
        format!("getRecordings?{query}"),
        // Wrong secret.
        format!(
            "getRecordings?{query}&checksum={}",
            checksum(ChecksumAlgorithm::Sha1, "getRecordings", query, "other")
        ),
        // Uppercase hex: bbb-web compares exactly.
        format!("getRecordings?{query}&checksum={}", good.to_uppercase()),
        // Query re-encoded differently from what was signed.
        format!("getRecordings?meetingID=a+b+c&state=any&checksum={good}"),
        // Wrong call name.
        format!(
            "getRecordings?{query}&checksum={}",
            checksum(ChecksumAlgorithm::Sha1, "getMeetings", query, "s3cret")
        ),
        // Truncated.
        format!("getRecordings?{query}&checksum={}", &good[..50]),
    ];
    for case in bad_cases {
        let (status, body) = get_text(&format!("{}{case}", bbb.api_url())).await;
        assert_eq!(status, 200);
        assert_eq!(body, failed, "{case}");
    }
}

#[tokio::test]
async fn accepted_checksums_can_be_restricted() {
    let bbb = FakeBbb::builder()
        .checksum(ChecksumAlgorithm::Sha256)
        .accepted_checksums(&[ChecksumAlgorithm::Sha256])
        .start()
        .await
        .unwrap();
    let url = bbb.get_recordings_url("state=any");
    assert!(url.ends_with(&bbb.sign("getRecordings", "state=any")));
    // The server signs with the algorithm it was given: the known SHA-256 value.
    assert_eq!(bbb.sign("getRecordings", ""), KNOWN_VECTORS[3].2);
    let (_, body) = get_text(&url).await;
    assert_eq!(texts(&body, "returncode"), ["SUCCESS"]);
    let sha1 = checksum(ChecksumAlgorithm::Sha1, "getRecordings", "", bbb.secret());
    let (_, body) = get_text(&format!("{}getRecordings?checksum={sha1}", bbb.api_url())).await;
    assert_eq!(texts(&body, "messageKey"), ["checksumError"]);
}

#[tokio::test]
async fn empty_listing_is_exactly_bbbs() {
    let bbb = FakeBbb::builder().start().await.unwrap();
    let (status, body) = get_text(&bbb.get_recordings_url("")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "<response><returncode>SUCCESS</returncode><recordings></recordings>\
         <messageKey>noRecordings</messageKey>\
         <message>There are no recordings for the meeting(s).</message></response>"
    );
}

#[tokio::test]
async fn formats_of_one_recording_are_merged() {
    let samples = make_samples();
    let bbb = start(&samples).await;
    let (_, body) = get_text(&bbb.get_recordings_url(&format!("recordID={ID_BOTH}"))).await;
    assert_eq!(texts(&body, "recordID"), [ID_BOTH]);
    assert_eq!(texts(&body, "type"), ["presentation", "video"]);
    assert_eq!(
        texts(&body, "url"),
        [bbb.presentation_url(ID_BOTH), bbb.video_url(ID_BOTH)]
    );
    assert_eq!(
        bbb.presentation_url(ID_BOTH),
        format!("{}/playback/presentation/2.3/{ID_BOTH}", bbb.base_url())
    );
    assert_eq!(
        bbb.video_url(ID_BOTH),
        format!("{}/playback/video/{ID_BOTH}/", bbb.base_url())
    );
    // Fields in bbb-web's order and units.
    assert_eq!(
        texts(&body, "meetingID"),
        [format!("ext-{}", &ID_BOTH[..8])]
    );
    assert_eq!(texts(&body, "internalMeetingID"), [ID_BOTH]);
    assert_eq!(texts(&body, "name"), [TRICKY_NAME]);
    assert_eq!(texts(&body, "meetingName"), [TRICKY_NAME]);
    assert_eq!(texts(&body, "bbb-recording-tags"), [""]);
    assert_eq!(
        texts(&body, "length"),
        ["3", "3"],
        "185 s is 3 whole minutes"
    );
    assert_eq!(texts(&body, "participants"), ["4"]);
    assert_eq!(texts(&body, "rawSize"), ["5000"]);
    assert_eq!(texts(&body, "size"), ["2000", "1000", "1000"]);
    assert_eq!(
        texts(&body, "image")[0],
        format!(
            "{}/presentation/{ID_BOTH}/presentation/{PRES_ID}/thumbnails/thumb-1.png",
            bbb.base_url()
        )
    );
    let order = [
        "<recordID>",
        "<meetingID>",
        "<internalMeetingID>",
        "<name>",
        "<isBreakout>",
        "<published>",
        "<state>",
        "<startTime>",
        "<endTime>",
        "<participants>",
        "<rawSize>",
        "<metadata>",
        "</metadata><size>",
        "<playback>",
        "<data/>",
    ];
    let positions: Vec<usize> = order.iter().map(|t| body.find(t).expect(t)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{body}");
    assert!(body.contains("<name><![CDATA["), "{body}");
}

#[tokio::test]
async fn record_id_prefixes_and_states() {
    let samples = make_samples();
    let bbb = start(&samples).await;
    let ids = |body: &str| texts(body, "recordID");

    // Default: published and unpublished, not deleted, and never the malformed directory.
    let (_, body) = get_text(&bbb.get_recordings_url("")).await;
    assert_eq!(ids(&body), [ID_BOTH, ID_AUDIO]);
    // Comma-separated prefixes.
    let (_, body) = get_text(&bbb.get_recordings_url("recordID=01,11")).await;
    assert_eq!(ids(&body), [ID_BOTH, ID_AUDIO]);
    let (_, body) = get_text(&bbb.get_recordings_url("recordID=1")).await;
    assert_eq!(ids(&body), [ID_AUDIO]);
    let (_, body) = get_text(&bbb.get_recordings_url("recordID=f")).await;
    assert_eq!(texts(&body, "messageKey"), ["noRecordings"]);
    // States.
    let (_, body) = get_text(&bbb.get_recordings_url("state=any")).await;
    assert_eq!(ids(&body), [ID_BOTH, ID_AUDIO, ID_DELETED]);
    let (_, body) = get_text(&bbb.get_recordings_url("state=deleted,unpublished")).await;
    assert_eq!(ids(&body), [ID_AUDIO, ID_DELETED]);
    // meetingID (exact external id) and meta_ filters.
    let q = format!("meetingID=ext-{}", &ID_AUDIO[..8]);
    let (_, body) = get_text(&bbb.get_recordings_url(&q)).await;
    assert_eq!(ids(&body), [ID_AUDIO]);
    let (_, body) = get_text(&bbb.get_recordings_url("meta_bbb-origin=Moodle&recordID=0")).await;
    assert_eq!(ids(&body), [ID_BOTH]);
}

#[tokio::test]
async fn pagination_with_total_elements() {
    let bbb = FakeBbb::builder().start().await.unwrap();
    bbb.add_recordings((0..250).map(|n| ApiRecording::new(ApiRecording::synthetic_id(n))));
    let mut all = Vec::new();
    for (offset, expected) in [(0, 100), (100, 100), (200, 50)] {
        let (_, body) =
            get_text(&bbb.get_recordings_url(&format!("offset={offset}&limit=100"))).await;
        let page = texts(&body, "recordID");
        assert_eq!(page.len(), expected);
        assert_eq!(texts(&body, "totalElements"), ["250"]);
        assert!(body.ends_with("<totalElements>250</totalElements></response>"));
        all.extend(page);
    }
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 250, "pages do not overlap");
    assert_eq!(all, sorted, "stable order");
    // limit is capped at 100; an invalid limit means no pagination and no totalElements.
    let (_, body) = get_text(&bbb.get_recordings_url("limit=1000")).await;
    assert_eq!(texts(&body, "recordID").len(), 100);
    let (_, body) = get_text(&bbb.get_recordings_url("limit=abc")).await;
    assert_eq!(texts(&body, "recordID").len(), 250);
    assert!(texts(&body, "totalElements").is_empty());
    // Past the end.
    let (_, body) = get_text(&bbb.get_recordings_url("offset=300&limit=10")).await;
    assert_eq!(texts(&body, "messageKey"), ["noRecordings"]);
    assert_eq!(texts(&body, "totalElements"), ["250"]);
}

#[tokio::test]
async fn synthetic_recordings_can_be_odd() {
    let samples = make_samples();
    let bbb = start(&samples).await;
    let missing = ApiRecording::synthetic_id(1);
    bbb.add_recording(ApiRecording::new(&missing));
    let mut odd = ApiRecording::new(ApiRecording::synthetic_id(2));
    odd.name = String::new();
    odd.start_time = "not-a-number".into();
    odd.internal_meeting_id = None;
    odd.metadata.push(("bad key".into(), "dropped".into()));
    odd.metadata.push(("bbb-origin".into(), "x]]>y<z".into()));
    odd.playbacks = vec![ApiPlayback {
        url: PlaybackUrl::Absolute(
            "https://elsewhere.example/p/2.0/playback.html?meetingId=x".into(),
        ),
        ..ApiPlayback::served("presentation", 7)
    }];
    bbb.add_recording(odd.clone());

    let (_, body) = get_text(&bbb.get_recordings_url("")).await;
    let ids = texts(&body, "recordID");
    assert!(ids.contains(&missing) && ids.contains(&odd.record_id));
    let (_, body) = get_text(&bbb.get_recordings_url(&format!("recordID={}", odd.record_id))).await;
    assert_eq!(texts(&body, "name"), [""]);
    assert_eq!(texts(&body, "startTime"), ["not-a-number"]);
    assert!(texts(&body, "internalMeetingID").is_empty());
    assert_eq!(texts(&body, "bbb-origin"), ["x]]>y<z"]);
    assert!(!body.contains("bad key"));
    assert_eq!(
        texts(&body, "url"),
        ["https://elsewhere.example/p/2.0/playback.html?meetingId=x"]
    );
    // The listed playback of a recording without files is a player page whose data 404s.
    let r = client()
        .get(format!(
            "{}/presentation/{missing}/metadata.xml",
            bbb.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    bbb.clear_added_recordings();
    let (_, body) = get_text(&bbb.get_recordings_url("")).await;
    assert_eq!(texts(&body, "recordID"), [ID_BOTH, ID_AUDIO]);
}

#[tokio::test]
async fn legacy_urls_and_html_404_knobs() {
    let samples = make_samples();
    let bbb = start(&samples).await;
    bbb.faults().set_api_20_urls(true);
    let (_, body) = get_text(&bbb.get_recordings_url(&format!("recordID={ID_AUDIO}"))).await;
    assert_eq!(texts(&body, "url"), [bbb.legacy_presentation_url(ID_AUDIO)]);

    bbb.faults().api_html_404_next(2);
    for _ in 0..2 {
        let (status, body) = get_text(&bbb.get_recordings_url("")).await;
        assert_eq!(status, 404);
        assert!(
            body.starts_with("<html>") && body.contains("404 Not Found"),
            "{body}"
        );
    }
    let (status, body) = get_text(&bbb.get_recordings_url("")).await;
    assert_eq!(status, 200);
    assert_eq!(texts(&body, "returncode"), ["SUCCESS"]);
    assert_eq!(bbb.request_count("/bigbluebutton/api/getRecordings"), 4);

    let (_, body) = get_text(&format!("{}/bigbluebutton/api", bbb.base_url())).await;
    assert_eq!(texts(&body, "version"), ["2.0"]);
}

#[test]
fn usable_from_synchronous_code() {
    let samples = make_samples();
    let bbb = FakeBbb::builder()
        .samples_dir(&samples.root)
        .start_blocking()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, body) = rt.block_on(get_text(&bbb.get_recordings_url("")));
    assert_eq!(status, 200);
    assert_eq!(texts(&body, "recordID"), [ID_BOTH, ID_AUDIO]);
    let base = bbb.base_url().to_owned();
    bbb.shutdown_blocking();
    assert!(
        rt.block_on(client().get(&base).send()).is_err(),
        "port closed"
    );
}

/// A samples tree the server cannot list is a broken set-up: it stops the start with the path,
/// and a tree broken after the start makes getRecordings fail loudly, never list fewer
/// recordings. Entries that are not record ids stay outside the listing (see make_samples).
#[tokio::test]
async fn a_samples_tree_that_cannot_be_listed_is_an_error() {
    let samples = make_samples();
    // A wrong samples path.
    let wrong = samples.root.join("no-such-dir");
    let e = FakeBbb::builder()
        .samples_dir(&wrong)
        .start()
        .await
        .expect_err("started on a missing samples folder");
    assert!(
        e.to_string().contains(&wrong.display().to_string())
            && e.to_string().contains("recordings/"),
        "{e}"
    );
    // A folder without either format.
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir(empty.path().join("recordings")).unwrap();
    let e = FakeBbb::builder()
        .samples_dir(empty.path())
        .start()
        .await
        .expect_err("started without recordings");
    assert!(e.to_string().contains("neither"), "{e}");
    // One format only is a usable tree.
    std::fs::create_dir(empty.path().join("recordings/video")).unwrap();
    FakeBbb::builder()
        .samples_dir(empty.path())
        .start()
        .await
        .expect("one format folder is enough");

    // A malformed metadata.xml.
    let meta = samples
        .root
        .join("recordings/presentation")
        .join(ID_AUDIO)
        .join("metadata.xml");
    let good = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(&meta, "<recording><id>").unwrap();
    let e = FakeBbb::builder()
        .samples_dir(&samples.root)
        .start()
        .await
        .expect_err("started with a malformed metadata.xml");
    assert!(e.to_string().contains(&meta.display().to_string()), "{e}");
    // A recording folder without one.
    std::fs::remove_file(&meta).unwrap();
    let e = FakeBbb::builder()
        .samples_dir(&samples.root)
        .start()
        .await
        .expect_err("started with a recording without metadata.xml");
    assert!(e.to_string().contains(&meta.display().to_string()), "{e}");

    // Broken after the start: HTTP 500 naming the file.
    std::fs::write(&meta, &good).unwrap();
    let bbb = start(&samples).await;
    let (status, _) = get_text(&bbb.get_recordings_url("")).await;
    assert_eq!(status, 200);
    std::fs::write(&meta, "not xml").unwrap();
    let (status, body) = get_text(&bbb.get_recordings_url("")).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains(&meta.display().to_string()), "{body}");
}
