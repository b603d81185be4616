//! Tests that each fault knob of the fake server is observable by a real client, plus protected
//! (token) recordings and the `fake-bbb` binary.

mod fake_bbb_common;

use std::io::BufRead;
use std::time::{Duration, Instant};

use fake_bbb::Throttle;
use fake_bbb_common::*;
use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};

#[tokio::test]
async fn delay_applies_to_every_request() {
    let samples = make_samples();
    let bbb = start(&samples).await;
    bbb.faults().set_delay(Duration::from_millis(300));
    let t = Instant::now();
    let (status, _) = get_text(&format!(
        "{}/presentation/{ID_BOTH}/shapes.svg",
        bbb.base_url()
    ))
    .await;
    assert_eq!(status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    bbb.faults().set_delay(Duration::ZERO);
    bbb.faults().set_api_delay(Duration::from_millis(300));
    let t = Instant::now();
    get_text(&bbb.get_recordings_url("")).await;
    assert!(t.elapsed() >= Duration::from_millis(300), "the API is");
    // Files are not delayed: with a one-minute API delay, a file request sent after an API call
    // is answered while that call still waits (no bound on how fast a loaded machine answers).
    bbb.faults().set_api_delay(Duration::from_secs(60));
    let api_url = bbb.get_recordings_url("");
    let api = tokio::spawn(async move { get_text(&api_url).await });
    let (status, _) = tokio::time::timeout(
        Duration::from_secs(30),
        get_text(&format!(
            "{}/presentation/{ID_BOTH}/shapes.svg",
            bbb.base_url()
        )),
    )
    .await
    .expect("files are not delayed");
    assert_eq!(status, 200);
    assert!(!api.is_finished(), "the API call is still delayed");
    api.abort();
    bbb.faults().set_api_delay(Duration::from_millis(300));
    // A client with a short timeout gives up.
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let err = quick
        .get(bbb.get_recordings_url(""))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
}

#[tokio::test]
async fn throttle_slows_media_after_the_first_bytes() {
    let samples = make_samples();
    let bbb = start(&samples).await;
    let url = format!(
        "{}/presentation/{ID_BOTH}/video/webcams.webm",
        bbb.base_url()
    );
    // 300 000 bytes: 200 000 free, then 100 000 at 200 000 B/s = about 0.5 s.
    bbb.faults().set_throttle(Some(Throttle {
        bytes_per_sec: 200_000,
        after_bytes: 200_000,
    }));
    let t = Instant::now();
    let body = client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let took = t.elapsed();
    assert_eq!(body, bytes(300_000, 1), "throttled bytes are intact");
    assert!(took >= Duration::from_millis(450), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Non-media files are never throttled: at 10 bytes per second from the first byte, the
    // metadata.xml (about 1.5 kB) would take minutes; it arrives within a generous bound.
    bbb.faults().set_throttle(Some(Throttle {
        bytes_per_sec: 10,
        after_bytes: 0,
    }));
    let meta = format!("{}/presentation/{ID_BOTH}/metadata.xml", bbb.base_url());
    let (status, body) = tokio::time::timeout(Duration::from_secs(30), get_text(&meta))
        .await
        .expect("metadata.xml is not throttled");
    assert_eq!(status, 200);
    assert!(body.len() > 1000, "{}", body.len());
    // Removed, the throttle no longer applies to media (300 000 bytes at 10 B/s: 8 hours).
    bbb.faults().set_throttle(None);
    let body = tokio::time::timeout(Duration::from_secs(30), async {
        client()
            .get(&url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    })
    .await
    .expect("media are no longer throttled");
    assert_eq!(body.len(), 300_000);
}

#[tokio::test]
async fn fail_next_with_prefix_and_request_counts() {
    let samples = make_samples();
    let bbb = start(&samples).await;
    let api = bbb.get_recordings_url("");
    let file = format!("{}/presentation/{ID_BOTH}/shapes.svg", bbb.base_url());
    bbb.faults().fail_next(2, Some("/bigbluebutton/api/"));
    assert_eq!(get_text(&file).await.0, 200, "other paths unaffected");
    assert_eq!(get_text(&api).await.0, 500);
    assert_eq!(get_text(&api).await.0, 500);
    assert_eq!(get_text(&api).await.0, 200);
    assert_eq!(bbb.request_count("/bigbluebutton/api/getRecordings"), 3);
    assert_eq!(bbb.request_count("/presentation/"), 1);
    assert_eq!(bbb.request_count("/"), 4);

    bbb.faults().fail_next(1, None);
    assert_eq!(get_text(&file).await.0, 500);
    assert_eq!(get_text(&file).await.0, 200);
    assert_eq!(
        bbb.request_counts()[&format!("/presentation/{ID_BOTH}/shapes.svg")],
        3
    );
    bbb.reset_request_counts();
    assert_eq!(bbb.request_count("/"), 0);
}

#[tokio::test]
async fn drop_media_cuts_the_body() {
    let samples = make_samples();
    let bbb = start(&samples).await;
    let url = format!(
        "{}/presentation/{ID_BOTH}/video/webcams.webm",
        bbb.base_url()
    );
    bbb.faults().drop_media_next(1);
    // Non-media requests do not use up the fault.
    assert_eq!(
        get_text(&format!(
            "{}/presentation/{ID_BOTH}/shapes.svg",
            bbb.base_url()
        ))
        .await
        .0,
        200
    );
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.is_err(), "body ends early");
    let full = client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(full.len(), 300_000, "only the next N requests");

    // What arrived before the cut is the start of the file.
    bbb.faults().drop_media_next(1);
    let (head, complete) = raw_body(
        bbb.addr(),
        &format!("/presentation/{ID_BOTH}/video/webcams.webm"),
    )
    .await;
    assert!(!complete);
    assert!(!head.is_empty() && head.len() < 300_000, "{}", head.len());
    assert_eq!(head, bytes(300_000, 1)[..head.len()]);
}

#[tokio::test]
async fn short_ranges_end_cleanly_before_what_they_announce() {
    use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
    let samples = make_samples();
    let bbb = start(&samples).await;
    let url = format!(
        "{}/presentation/{ID_BOTH}/video/webcams.webm",
        bbb.base_url()
    );
    bbb.faults().short_ranges_next(1);
    // A request without Range is not shortened and does not use up the fault.
    let whole = client().get(&url).send().await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.bytes().await.unwrap(), bytes(300_000, 1));
    let r = client()
        .get(&url)
        .header(RANGE, "bytes=100000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()[CONTENT_RANGE], "bytes 100000-299999/300000");
    assert!(!r.headers().contains_key(CONTENT_LENGTH), "sent chunked");
    // The body ends without an error, at half of the announced range.
    let body = r.bytes().await.expect("a clean end");
    assert_eq!(body, bytes(300_000, 1)[100_000..200_000]);
    // Only the next N: the same request is whole again.
    let r = client()
        .get(&url)
        .header(RANGE, "bytes=100000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[CONTENT_LENGTH], "200000");
    assert_eq!(r.bytes().await.unwrap(), bytes(300_000, 1)[100_000..]);
    assert_eq!(
        bbb.served("video/webcams.webm"),
        vec![
            (200, 0, false),
            (206, 100_000, false),
            (206, 100_000, false)
        ]
    );
}

/// Reads a response body by hand until the connection closes: (body bytes, complete?).
async fn raw_body(addr: std::net::SocketAddr, path: &str) -> (Vec<u8>, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&out[..split]).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let body = out[split..].to_vec();
    let complete = body.len() == len;
    (body, complete)
}

#[tokio::test]
async fn die_closes_port_and_cuts_transfers() {
    let samples = make_samples();
    let bbb = start(&samples).await;
    let url = format!(
        "{}/presentation/{ID_BOTH}/video/webcams.webm",
        bbb.base_url()
    );
    // A slow transfer in flight when the server dies.
    bbb.faults().set_throttle(Some(Throttle {
        bytes_per_sec: 50_000,
        after_bytes: 0,
    }));
    let c = client();
    let resp = c.get(&url).send().await.unwrap();
    let transfer = tokio::spawn(async move { resp.bytes().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    bbb.die();
    let result = tokio::time::timeout(Duration::from_secs(5), transfer)
        .await
        .expect("the cut is immediate, not at the end of the throttled body")
        .unwrap();
    assert!(result.is_err(), "transfer cut");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = c.get(bbb.get_recordings_url("")).send().await.unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    assert!(
        tokio::net::TcpStream::connect(bbb.addr()).await.is_err(),
        "port closed"
    );
    bbb.shutdown().await;
}

#[tokio::test]
async fn protected_token_works_once_and_sets_a_cookie() {
    let samples = make_samples();
    let bbb = start(&samples).await;
    bbb.faults().set_protected(true);
    let file = format!("{}/presentation/{ID_BOTH}/shapes.svg", bbb.base_url());
    let video = format!("{}video-0.m4v", bbb.video_url(ID_BOTH));
    let c = client();
    assert_eq!(
        c.get(&file).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        c.get(&video).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    let token_url = bbb.protected_token_url(ID_BOTH, "presentation");
    assert!(token_url.starts_with(&format!(
        "{}/recording/{ID_BOTH}/presentation?token=",
        bbb.base_url()
    )));
    let r = c.get(&token_url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        r.headers()[LOCATION],
        bbb.presentation_url(ID_BOTH).as_str()
    );
    assert!(
        r.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .starts_with(&format!("recording_presentation_{ID_BOTH}="))
    );
    // The cookie opens this recording's presentation files, and only those.
    assert_eq!(c.get(&file).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        c.get(&video).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        client().get(&file).send().await.unwrap().status(),
        StatusCode::FORBIDDEN,
        "a client without the cookie"
    );
    // Used once: a second redemption fails, even from another client.
    assert_eq!(
        client().get(&token_url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    // A token is bound to its recording and format.
    let other = bbb
        .protected_token_url(ID_BOTH, "video")
        .replace("/video?", "/presentation?");
    assert_eq!(
        client().get(&other).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // The API hands out fresh token URLs, and a following client reaches the video.
    let (_, body) = get_text(&bbb.get_recordings_url(&format!("recordID={ID_BOTH}"))).await;
    assert_eq!(texts(&body, "protected"), ["true"]);
    let urls = texts(&body, "url");
    assert!(
        urls.iter()
            .all(|u| u.contains("/recording/") && u.contains("?token=")),
        "{urls:?}"
    );
    let follower = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let page = follower.get(&urls[1]).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("video-0.m4v"));
    assert_eq!(
        follower.get(&video).send().await.unwrap().status(),
        StatusCode::OK
    );

    bbb.faults().set_protected(false);
    assert_eq!(
        client().get(&file).send().await.unwrap().status(),
        StatusCode::OK
    );
}

#[test]
fn binary_prints_its_url_and_serves() {
    let samples = make_samples();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fake-bbb"))
        .arg("--samples")
        .arg(&samples.root)
        .args([
            "--secret",
            "bin-secret",
            "--redirect-20",
            "--synthetic",
            "3",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first
        .strip_prefix("fake-bbb listening on ")
        .unwrap_or_else(|| panic!("first line: {first}"))
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"));
    let mut example = None;
    for line in lines.by_ref().take(3) {
        let line = line.unwrap();
        if let Some(u) = line.strip_prefix("getRecordings: ") {
            example = Some(u.to_owned());
        }
    }
    let example = example.expect("an example URL");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, body) = rt.block_on(get_text(&example));
    assert_eq!(status, 200);
    assert_eq!(texts(&body, "recordID").len(), 2 + 3, "samples + synthetic");
    let r = rt
        .block_on(
            client()
                .get(format!(
                    "{base}/playback/presentation/2.0/playback.html?meetingId={ID_BOTH}"
                ))
                .send(),
        )
        .unwrap();
    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
