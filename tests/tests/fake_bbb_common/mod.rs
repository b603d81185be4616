//! Shared fixtures for the fake BBB server's own tests: a small samples tree in a temp directory
//! (so these tests do not depend on the real samples), HTTP clients, and XML helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use fake_bbb::FakeBbb;

/// Presentation + video formats, published.
pub const ID_BOTH: &str = "0123456789abcdef0123456789abcdef01234567-1600000000000";
/// Presentation only, audio-only media, unpublished.
pub const ID_AUDIO: &str = "1123456789abcdef0123456789abcdef01234567-1600000100000";
/// Presentation only, in state "deleted": hidden unless state=any/deleted.
pub const ID_DELETED: &str = "2123456789abcdef0123456789abcdef01234567-1600000200000";
pub const PRES_ID: &str = "d2d9a672040fbde2a47a10bf6c37b6a4b5ae187f-1600000000001";
/// A name that needs escaping in XML and in CDATA.
pub const TRICKY_NAME: &str = "Cours <A&B> ]]> \"fin\" é";

pub struct Samples {
    pub _dir: tempfile::TempDir,
    pub root: PathBuf,
    /// A file next to (outside) the samples directory that must never be served.
    pub outside: PathBuf,
}

/// Deterministic pseudo-random bytes, so that Range answers can be compared with the file.
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn metadata(id: &str, state: &str, format: &str, link: &str, name: &str) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let published = state == "published";
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<recording>
  <id>{id}</id>
  <state>{state}</state>
  <published>{published}</published>
  <start_time>1600000000000</start_time>
  <end_time>1600000600000</end_time>
  <participants>4</participants>
  <meeting id="{id}" externalId="ext-{id_short}" name="{name}" breakout="false"/>
  <meta>
    <isBreakout>false</isBreakout>
    <meetingName>{name}</meetingName>
    <bbb-origin>Moodle</bbb-origin>
    <bbb-recording-tags></bbb-recording-tags>
  </meta>
  <playback>
    <format>{format}</format>
    <link>{link}</link>
    <processing_time>4321</processing_time>
    <duration>185000</duration>
    <size>1000</size>
    <extensions><preview><images>
      <image width="176" height="136" alt="Welcome">https://old.example/presentation/{id}/presentation/{PRES_ID}/thumbnails/thumb-1.png</image>
    </images></preview></extensions>
  </playback>
  <raw_size>5000</raw_size>
</recording>
"#,
        name = esc(name),
        id_short = &id[..8],
    )
}

pub fn make_samples() -> Samples {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("samples");
    let rec = root.join("recordings");
    let p = rec.join("presentation");

    let both = p.join(ID_BOTH);
    write(
        &both.join("metadata.xml"),
        metadata(
            ID_BOTH,
            "published",
            "presentation",
            &format!("https://old.example/playback/presentation/2.3/{ID_BOTH}"),
            TRICKY_NAME,
        )
        .as_bytes(),
    );
    write(
        &both.join("shapes.svg"),
        b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
    );
    write(&both.join("captions.json"), b"[]");
    write(&both.join("caption_en-US.vtt"), b"WEBVTT\n");
    write(&both.join("video/webcams.webm"), &bytes(300_000, 1));
    write(&both.join("deskshare/deskshare.webm"), &bytes(1000, 2));
    write(
        &both.join(format!("presentation/{PRES_ID}/slide-1.png")),
        &bytes(500, 3),
    );

    let v = rec.join("video").join(ID_BOTH);
    write(
        &v.join("metadata.xml"),
        metadata(
            ID_BOTH,
            "published",
            "video",
            &format!("https://old.example/playback/video/{ID_BOTH}/"),
            TRICKY_NAME,
        )
        .as_bytes(),
    );
    write(
        &v.join("index.html"),
        b"<html><body><video><source src=\"video-0.m4v\" type=\"video/mp4\"></video></body></html>",
    );
    write(&v.join("video-0.m4v"), &bytes(200_000, 4));

    let audio = p.join(ID_AUDIO);
    write(
        &audio.join("metadata.xml"),
        metadata(ID_AUDIO, "unpublished", "presentation", "x", "Audio only").as_bytes(),
    );
    write(&audio.join("audio/audio.webm"), &bytes(50_000, 5));

    let deleted = p.join(ID_DELETED);
    write(
        &deleted.join("metadata.xml"),
        metadata(ID_DELETED, "deleted", "presentation", "x", "Deleted").as_bytes(),
    );

    // Not a recording id: must be ignored by the listing and never served.
    write(&p.join("not-a-record-id/metadata.xml"), b"<recording/>");

    write(
        &root.join("player/2.3/index.html"),
        b"<html><head><script src=\"/playback/presentation/2.3/app.js\"></script></head><body>player 2.3</body></html>",
    );
    write(&root.join("player/2.3/app.js"), b"console.log('2.3');");
    write(&root.join("player/2.3/static/css/main.css"), b"body{}");
    write(
        &root.join("player/2.0/playback.html"),
        b"<html><body>player 2.0</body></html>",
    );
    write(&root.join("player/2.0/playback.js"), b"// 2.0");

    let outside = dir.path().join("outside-secret.txt");
    write(&outside, b"TOP SECRET");
    // A symlink inside the tree pointing outside it: must not be followed out.
    std::os::unix::fs::symlink(&outside, both.join("leak.txt")).unwrap();

    Samples {
        _dir: dir,
        root,
        outside,
    }
}

pub async fn start(samples: &Samples) -> FakeBbb {
    FakeBbb::builder()
        .samples_dir(&samples.root)
        .start()
        .await
        .expect("fake BBB starts")
}

/// A client that follows no redirects (tests look at them) and keeps cookies.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap()
}

pub async fn get_text(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// Texts of every `<tag>` element, in document order, parsed with a real XML parser (CDATA and
/// entities resolved). Panics if the document is not well-formed.
pub fn texts(xml: &str, tag: &str) -> Vec<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut depth_name: Vec<String> = Vec::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(s) => {
                let name = String::from_utf8_lossy(s.name().as_ref()).into_owned();
                if name == tag {
                    current = Some(String::new());
                }
                depth_name.push(name);
            }
            Event::Empty(s) if s.name().as_ref() == tag.as_bytes() => out.push(String::new()),
            Event::End(_) => {
                if depth_name.pop().as_deref() == Some(tag)
                    && let Some(t) = current.take()
                {
                    out.push(t);
                }
            }
            Event::Text(t) => {
                if let Some(c) = current.as_mut() {
                    c.push_str(&t.decode().unwrap());
                }
            }
            Event::CData(t) => {
                if let Some(c) = current.as_mut() {
                    c.push_str(&t.decode().unwrap());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(c) = current.as_mut() {
                    let e = format!("&{};", r.decode().unwrap());
                    c.push_str(&quick_xml::escape::unescape(&e).unwrap());
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}
