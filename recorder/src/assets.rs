//! The offline player assets: third-party files that BBB's player loads from public CDNs at run
//! time (the tldraw v2 whiteboard's fonts, icons and translations), built into the recorder and
//! looked up by the URL the player asks for. Which URLs exist and what answers them is in
//! `recorder/design/assets.md`; where the files come from and their licences in
//! `recorder/assets/tldraw/ORIGIN.md`.
//!
//! Nothing here touches the browser: [`crate::requests`] asks [`lookup`] for each request.

use include_dir::{Dir, include_dir};
use url::Url;

/// `@tldraw/assets` 2.0.0-alpha.19: the files behind `@bigbluebutton/assets@2.0.0-alpha.N`.
static TLDRAW: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets/tldraw");

/// One CDN location whose files the recorder answers: `https://<host><prefix>@<version>/<path>`.
struct CdnRoute {
    host: &'static str,
    /// Path up to the `@` of the version, e.g. `/@bigbluebutton/assets`.
    package: &'static str,
    bundle: &'static Dir<'static>,
}

/// Every CDN location a BBB player is known to load from (bbb-playback 5.1.0 to 5.4.x load
/// `@bigbluebutton/assets` from unpkg; the others are where stock tldraw v2 looks when a player is
/// built without `assetUrls`).
const ROUTES: &[CdnRoute] = &[
    CdnRoute {
        host: "unpkg.com",
        package: "/@bigbluebutton/assets",
        bundle: &TLDRAW,
    },
    CdnRoute {
        host: "unpkg.com",
        package: "/@tldraw/assets",
        bundle: &TLDRAW,
    },
    CdnRoute {
        host: "cdn.jsdelivr.net",
        package: "/npm/@tldraw/assets",
        bundle: &TLDRAW,
    },
];

/// A bundled file, ready to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    pub body: &'static [u8],
    pub mime: &'static str,
}

/// What the recorder knows about a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A known CDN location, and the file is bundled.
    Bundled(Asset),
    /// A known CDN location, but not a file the recorder has (or a path it refuses to read).
    NotBundled,
    /// Not a CDN location the recorder answers.
    Unknown,
}

/// Looks `url` up among the bundled CDN files. Any version of a known package is answered with
/// the bundled files (their names have not changed across the versions BBB uses).
pub fn lookup(url: &Url) -> Lookup {
    if url.scheme() != "https" && url.scheme() != "http" {
        return Lookup::Unknown;
    }
    let Some(host) = url.host_str() else {
        return Lookup::Unknown;
    };
    let path = url.path();
    for route in ROUTES {
        if !host.eq_ignore_ascii_case(route.host) {
            continue;
        }
        let Some(rest) = path.strip_prefix(route.package) else {
            continue;
        };
        // `@<version>/<file>`; an unversioned `/<file>` is the latest version, answered the same.
        let file = match rest.strip_prefix('@') {
            Some(versioned) => match versioned.split_once('/') {
                Some((version, file)) if is_version(version) => file,
                _ => return Lookup::NotBundled,
            },
            None => match rest.strip_prefix('/') {
                Some(file) => file,
                None => continue,
            },
        };
        return match bundled_file(route.bundle, file) {
            Some(asset) => Lookup::Bundled(asset),
            None => Lookup::NotBundled,
        };
    }
    Lookup::Unknown
}

fn is_version(v: &str) -> bool {
    v.starts_with(|c: char| c.is_ascii_digit())
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'+')
}

/// The bundled file at `path` (`fonts/X.woff2`), refusing anything that is not a plain relative
/// path of safe names (the path comes from a page: never let it walk the bundle).
fn bundled_file(bundle: &'static Dir<'static>, path: &str) -> Option<Asset> {
    let safe = !path.is_empty()
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if !safe {
        return None;
    }
    // Licence and origin notes are shipped, but they are not assets a player asks for.
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.starts_with("LICENSE") || name.starts_with("OFL") || name.ends_with(".md") {
        return None;
    }
    let file = bundle.get_file(path)?;
    Some(Asset {
        body: file.contents(),
        mime: mime_of(name),
    })
}

fn mime_of(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(url: &str) -> Lookup {
        lookup(&Url::parse(url).unwrap())
    }

    #[test]
    fn the_four_fonts_of_the_bbb_3_0_whiteboard_are_bundled() {
        for font in [
            "Shantell_Sans-Normal-SemiBold",
            "IBMPlexSerif-Medium",
            "IBMPlexSans-Medium",
            "IBMPlexMono-Medium",
        ] {
            let url = format!(
                "https://unpkg.com/@bigbluebutton/assets@2.0.0-alpha.20/fonts/{font}.woff2"
            );
            let Lookup::Bundled(asset) = at(&url) else {
                panic!("{url} is not bundled");
            };
            assert_eq!(asset.mime, "font/woff2");
            // A WOFF2 file starts with its signature.
            assert_eq!(&asset.body[..4], b"wOF2", "{font}");
        }
    }

    #[test]
    fn icons_translations_and_embed_icons_are_bundled_for_any_version() {
        for (url, mime) in [
            (
                "https://unpkg.com/@bigbluebutton/assets@2.0.0-alpha.25/icons/icon/tool-pencil.svg",
                "image/svg+xml",
            ),
            (
                "https://unpkg.com/@bigbluebutton/assets@2.0.0-alpha.20/translations/en.json",
                "application/json",
            ),
            (
                "https://unpkg.com/@tldraw/assets@2.0.0-alpha.19/translations/pt-br.json",
                "application/json",
            ),
            (
                "https://cdn.jsdelivr.net/npm/@tldraw/assets@2.0.0/embed-icons/youtube.png",
                "image/png",
            ),
        ] {
            match at(url) {
                Lookup::Bundled(a) => assert_eq!(a.mime, mime, "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_files_of_a_known_package_are_not_bundled() {
        assert_eq!(
            at("https://unpkg.com/@bigbluebutton/assets@2.0.0-alpha.20/fonts/NotBundled.woff2"),
            Lookup::NotBundled
        );
        assert_eq!(
            at("https://unpkg.com/@bigbluebutton/assets@2.0.0-alpha.20/LICENSE-Apache-2.0.txt"),
            Lookup::NotBundled
        );
        assert_eq!(
            at("https://unpkg.com/@bigbluebutton/assets@2.0.0-alpha.20/ORIGIN.md"),
            Lookup::NotBundled
        );
    }

    #[test]
    fn paths_that_could_walk_the_bundle_are_refused() {
        for url in [
            "https://unpkg.com/@bigbluebutton/assets@2.0.0-alpha.20/fonts/%2e%2e/ORIGIN.md",
            "https://unpkg.com/@bigbluebutton/assets@2.0.0-alpha.20/fonts//x.woff2",
            "https://unpkg.com/@bigbluebutton/assets@../fonts/IBMPlexSans-Medium.woff2",
            "https://unpkg.com/@bigbluebutton/assets@2.0.0-alpha.20/fonts/a%00b.woff2",
        ] {
            assert_ne!(
                std::mem::discriminant(&at(url)),
                std::mem::discriminant(&Lookup::Bundled(Asset {
                    body: b"",
                    mime: ""
                })),
                "{url}"
            );
        }
    }

    #[test]
    fn other_hosts_and_schemes_are_not_cdn_locations() {
        assert_eq!(
            at("https://bbb.example.org/@bigbluebutton/assets@1/fonts/IBMPlexSans-Medium.woff2"),
            Lookup::Unknown
        );
        assert_eq!(at("https://unpkg.com/react@18/index.js"), Lookup::Unknown);
        assert_eq!(
            at("ftp://unpkg.com/@tldraw/assets@2.0.0-alpha.19/fonts/IBMPlexSans-Medium.woff2"),
            Lookup::Unknown
        );
    }
}
