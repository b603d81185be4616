//! `fake-bbb`: runs the fake BBB server from the command line, for manual runs of `bbb-record` and
//! `bbb-migrate` against the samples. Prints its URL, secret and a signed getRecordings URL on
//! stdout, then serves until SIGINT or SIGTERM. All behaviour lives in the `fake_bbb` library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use fake_bbb::{ApiRecording, ChecksumAlgorithm, DEFAULT_SECRET, FakeBbb, Throttle};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "A fake BigBlueButton server on 127.0.0.1 serving sample recordings"
)]
struct Args {
    /// Samples directory (recordings/presentation, recordings/video, player/2.3, player/2.0).
    #[arg(long)]
    samples: PathBuf,
    /// Port on 127.0.0.1; 0 lets the OS choose.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Shared secret of the API.
    #[arg(long, default_value = DEFAULT_SECRET)]
    secret: String,
    /// Algorithm of the example URL printed on start: sha1, sha256, sha384 or sha512.
    #[arg(long, default_value = "sha1", value_parser = parse_algorithm)]
    checksum: ChecksumAlgorithm,
    /// Delay every request by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Extra delay for API calls, in milliseconds.
    #[arg(long, default_value_t = 0)]
    api_delay_ms: u64,
    /// Limit media bodies to this many bytes per second.
    #[arg(long)]
    throttle: Option<u64>,
    /// Send the first N bytes of each media body unthrottled.
    #[arg(long, default_value_t = 0, requires = "throttle")]
    throttle_after: u64,
    /// Answer the next N requests with HTTP 500.
    #[arg(long, default_value_t = 0)]
    fail_next: u64,
    /// Only requests whose path starts with this prefix count for --fail-next.
    #[arg(long, requires = "fail_next")]
    fail_prefix: Option<String>,
    /// Answer the next N API calls with nginx's HTML 404 page.
    #[arg(long, default_value_t = 0)]
    api_html_404: u64,
    /// Drop the connection halfway through the next N media bodies.
    #[arg(long, default_value_t = 0)]
    drop_media: u64,
    /// Redirect 2.0 player URLs to the 2.3 player (301).
    #[arg(long)]
    redirect_20: bool,
    /// List presentation playbacks with legacy 2.0 player URLs.
    #[arg(long)]
    api_20_urls: bool,
    /// Scalelite-style protected recordings (one-time token URLs, cookie-gated files).
    #[arg(long)]
    protected: bool,
    /// Add N synthetic recordings (API listing only, no files), e.g. to test pagination.
    #[arg(long, default_value_t = 0)]
    synthetic: u64,
    /// Die (close the port and cut every connection) after this many seconds.
    #[arg(long)]
    die_after_secs: Option<u64>,
}

fn parse_algorithm(s: &str) -> Result<ChecksumAlgorithm, String> {
    ChecksumAlgorithm::parse(s).ok_or_else(|| format!("unknown checksum algorithm {s:?}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "fake_bbb=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        args.samples.is_dir(),
        "samples directory {} does not exist",
        args.samples.display()
    );
    let bbb = FakeBbb::builder()
        .samples_dir(&args.samples)
        .secret(&args.secret)
        .checksum(args.checksum)
        .port(args.port)
        .start()
        .await
        .context("starting the fake BBB server")?;

    let faults = bbb.faults();
    faults.set_delay(Duration::from_millis(args.delay_ms));
    faults.set_api_delay(Duration::from_millis(args.api_delay_ms));
    faults.set_throttle(args.throttle.map(|bytes_per_sec| Throttle {
        bytes_per_sec,
        after_bytes: args.throttle_after,
    }));
    if args.fail_next > 0 {
        faults.fail_next(args.fail_next, args.fail_prefix.as_deref());
    }
    faults.api_html_404_next(args.api_html_404);
    faults.drop_media_next(args.drop_media);
    faults.set_redirect_20(args.redirect_20);
    faults.set_api_20_urls(args.api_20_urls);
    faults.set_protected(args.protected);
    bbb.add_recordings(
        (0..args.synthetic).map(|n| ApiRecording::new(ApiRecording::synthetic_id(n))),
    );

    // The first line is machine-readable: tests and scripts wait for it.
    println!("fake-bbb listening on {}", bbb.base_url());
    println!("secret: {}", bbb.secret());
    println!("server url: {}", bbb.server_url());
    println!("getRecordings: {}", bbb.get_recordings_url(""));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let die_after = async {
        match args.die_after_secs {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = die_after => {
            bbb.die();
            tracing::info!("died on request; waiting for a signal to exit");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
    }
    bbb.shutdown().await;
    Ok(())
}
