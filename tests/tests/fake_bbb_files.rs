//! Tests of the fake server's file side: the players, recording files, Content-Type, HTTP Range,
//! path traversal attempts and the video playback format.

mod fake_bbb_common;

use fake_bbb_common::*;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE,
};

#[tokio::test]
async fn ranges_match_the_file() {
    let samples = make_samples();
    let bbb = start(&samples).await;
    let url = format!(
        "{}/presentation/{ID_BOTH}/video/webcams.webm",
        bbb.base_url()
    );
    let file = bytes(300_000, 1);
    let len = file.len();
    let c = client();

    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[ACCEPT_RANGES], "bytes");
    assert_eq!(r.headers()[CONTENT_TYPE], "video/webm");
    assert_eq!(r.bytes().await.unwrap(), file);

    for (range, start, end) in [
        ("bytes=0-0", 0, 0),
        ("bytes=100-199", 100, 199),
        ("bytes=299990-400000", 299_990, len - 1),
        ("bytes=123456-", 123_456, len - 1),
        ("bytes=-1000", len - 1000, len - 1),
        ("bytes=-999999", 0, len - 1),
    ] {
        let r = c.get(&url).header(RANGE, range).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            r.headers()[CONTENT_RANGE].to_str().unwrap(),
            format!("bytes {start}-{end}/{len}"),
            "{range}"
        );
        assert_eq!(r.bytes().await.unwrap(), file[start..=end], "{range}");
    }
    for range in ["bytes=300000-", "bytes=400000-400010", "bytes=-0"] {
        let r = c.get(&url).header(RANGE, range).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(
            r.headers()[CONTENT_RANGE].to_str().unwrap(),
            format!("bytes */{len}")
        );
    }
    // Validators as nginx gives them; If-Range keeps the range only for the same file.
    let r = c.get(&url).send().await.unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let modified = r.headers()["last-modified"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with(&format!("-{len:x}\"")),
        "{etag}"
    );
    assert!(modified.ends_with(" GMT"), "{modified}");
    for (validator, status) in [
        (etag.as_str(), StatusCode::PARTIAL_CONTENT),
        (modified.as_str(), StatusCode::PARTIAL_CONTENT),
        ("\"other\"", StatusCode::OK),
        ("Thu, 01 Jan 1970 00:00:00 GMT", StatusCode::OK),
    ] {
        let r = c
            .get(&url)
            .header(RANGE, "bytes=100-")
            .header("if-range", validator)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "If-Range {validator}");
    }
    // Malformed or multiple ranges: the whole file.
    for range in ["bytes=5-2", "bytes=0-1,4-5", "lines=1-2"] {
        let r = c.get(&url).header(RANGE, range).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{range}");
        assert_eq!(r.bytes().await.unwrap().len(), len);
    }
    // HEAD: headers only.
    let r = c
        .head(&url)
        .header(RANGE, "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()[CONTENT_LENGTH], "10");
    assert!(r.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn content_types_and_missing_files() {
    let samples = make_samples();
    let bbb = start(&samples).await;
    let base = format!("{}/presentation/{ID_BOTH}", bbb.base_url());
    for (file, ctype) in [
        ("metadata.xml", "text/xml"),
        ("shapes.svg", "image/svg+xml"),
        ("captions.json", "application/json"),
        ("caption_en-US.vtt", "text/vtt"),
        (&format!("presentation/{PRES_ID}/slide-1.png"), "image/png"),
        ("deskshare/deskshare.webm", "video/webm"),
    ] {
        let r = client().get(format!("{base}/{file}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{file}");
        assert_eq!(r.headers()[CONTENT_TYPE], ctype, "{file}");
    }
    for missing in ["panzooms.xml", "video/webcams.mp4", "deskshare", ""] {
        let r = client()
            .get(format!("{base}/{missing}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{missing:?}");
    }
    let r = client()
        .get(format!(
            "{}/presentation/{ID_AUDIO}/audio/audio.webm",
            bbb.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), bytes(50_000, 5));
}

#[tokio::test]
async fn traversal_is_impossible() {
    let samples = make_samples();
    let bbb = start(&samples).await;
    assert!(samples.outside.exists());
    let base = bbb.base_url();
    let attempts = [
        format!("/presentation/{ID_BOTH}/../../../outside-secret.txt"),
        format!("/presentation/{ID_BOTH}/%2e%2e/%2e%2e/%2e%2e/outside-secret.txt"),
        format!("/presentation/{ID_BOTH}/..%2f..%2f..%2foutside-secret.txt"),
        format!("/presentation/{ID_BOTH}/video/..%5c..%5cmetadata.xml"),
        format!("/presentation/{ID_BOTH}//etc/passwd"),
        format!("/presentation/{ID_BOTH}/leak.txt"),
        format!("/presentation/{ID_BOTH}/.hidden"),
        "/presentation/../recordings/presentation/x/metadata.xml".to_owned(),
        "/presentation/%2e%2e/outside-secret.txt".to_owned(),
        "/presentation/not-a-record-id/metadata.xml".to_owned(),
        "/presentation/..%2f..%2foutside-secret.txt/x".to_owned(),
        format!("/presentation/{}/metadata.xml", ID_BOTH.to_uppercase()),
        "/playback/presentation/2.3/../../../../outside-secret.txt".to_owned(),
        "/playback/presentation/2.3/%2e%2e/%2e%2e/%2e%2e/outside-secret.txt".to_owned(),
        "/playback/presentation/2.0/../../recordings/presentation".to_owned(),
        "/playback/presentation/2.0/%2e%2e%2f%2e%2e%2foutside-secret.txt".to_owned(),
        "/playback/video/../presentation/x".to_owned(),
        format!("/playback/video/{ID_BOTH}/../../../outside-secret.txt"),
        format!("/playback/video/{ID_BOTH}/%2e%2e%2fmetadata.xml"),
        "/playback/video/..%2f..%2f/".to_owned(),
        "/outside-secret.txt".to_owned(),
    ];
    for path in attempts {
        // Sent raw over TCP: an HTTP client would normalise `..` away before sending.
        let (status, body) = raw_get(bbb.addr(), &path).await;
        assert!(status == 404 || status == 400, "{path} answered {status}");
        assert!(!body.contains("TOP SECRET"), "{path} leaked");
    }
    let (status, _) = raw_get(bbb.addr(), &format!("/presentation/{ID_BOTH}/shapes.svg")).await;
    assert_eq!(status, 200, "the raw client works");
    let _ = base;
}

/// One HTTP/1.1 GET written by hand, so the path reaches the server exactly as given.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn players_and_redirect_knob() {
    let samples = make_samples();
    let bbb = start(&samples).await;
    let base = bbb.base_url();
    for path in [
        format!("/playback/presentation/2.3/{ID_BOTH}"),
        format!("/playback/presentation/2.3/{ID_BOTH}/"),
        "/playback/presentation/2.3/not-a-valid-id".to_owned(),
    ] {
        let (status, body) = get_text(&format!("{base}{path}")).await;
        assert_eq!(status, 200, "{path}");
        assert!(body.contains("player 2.3"), "{path}");
    }
    let r = client()
        .get(format!("{base}/playback/presentation/2.3/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[CONTENT_TYPE], "application/javascript");
    assert_eq!(r.text().await.unwrap(), "console.log('2.3');");
    let (status, body) = get_text(&format!(
        "{base}/playback/presentation/2.3/static/css/main.css"
    ))
    .await;
    assert_eq!((status, body.as_str()), (200, "body{}"));
    let (status, _) = get_text(&format!(
        "{base}/playback/presentation/2.3/static/missing.js"
    ))
    .await;
    assert_eq!(status, 404);

    let legacy = bbb.legacy_presentation_url(ID_BOTH);
    let (status, body) = get_text(&legacy).await;
    assert_eq!(status, 200);
    assert!(body.contains("player 2.0"));
    let (_, body) = get_text(&format!("{base}/playback/presentation/2.0/playback.js")).await;
    assert_eq!(body, "// 2.0");

    bbb.faults().set_redirect_20(true);
    let r = client().get(&legacy).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        r.headers()[LOCATION],
        format!("/playback/presentation/2.3/{ID_BOTH}").as_str()
    );
    // A following client lands on the 2.3 player.
    let body = reqwest::get(&legacy).await.unwrap().text().await.unwrap();
    assert!(body.contains("player 2.3"));
}

#[tokio::test]
async fn video_format() {
    let samples = make_samples();
    let bbb = start(&samples).await;
    let page = bbb.video_url(ID_BOTH);
    let (status, body) = get_text(&page).await;
    assert_eq!(status, 200);
    assert!(body.contains("video-0.m4v"));
    let r = client()
        .get(format!("{page}video-0.m4v"))
        .header(RANGE, "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()[CONTENT_TYPE], "video/mp4");
    assert_eq!(r.bytes().await.unwrap(), bytes(200_000, 4)[1000..2000]);
    let r = client()
        .get(page.trim_end_matches('/'))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        r.headers()[LOCATION],
        format!("/playback/video/{ID_BOTH}/").as_str()
    );
    let (status, _) = get_text(&bbb.video_url(ID_AUDIO)).await;
    assert_eq!(status, 404);
}
