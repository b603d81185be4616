//! The page `doctor`'s test recording records: served from 127.0.0.1 by this process for as long
//! as the check runs, so that the check needs neither a BBB server nor a file on disk, and still
//! goes through everything a recording does (Xvfb, Chromium loading an http page, the capture,
//! the encoder, the container). The page changes colour every 100 ms, so an encoder that only
//! ever sees one picture would still be caught by a viewer. Serves that one page to every GET and
//! nothing else.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The page: a colour cycle, a counter, no outside resource.
pub const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>bbb-migrate doctor</title></head>
<body style="margin:0;font:48px sans-serif;display:flex;align-items:center;justify-content:center;height:100vh">
<div id="t">bbb-migrate doctor</div>
<script>
let n = 0;
setInterval(() => {
  n += 1;
  document.body.style.background = `hsl(${(n * 7) % 360}, 80%, 50%)`;
  document.getElementById("t").textContent = `bbb-migrate doctor ${(n / 10).toFixed(1)} s`;
}, 100);
</script>
</body></html>
"#;

/// A running server; stopped when dropped.
pub struct TestPage {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TestPage {
    /// Listens on a free port of 127.0.0.1 (never on another interface: nobody else is meant
    /// to see it).
    pub async fn start() -> std::io::Result<TestPage> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    // The request itself does not matter: read its head, answer the page.
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                        PAGE.len()
                    );
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(PAGE.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Ok(TestPage { addr, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}/doctor.html", self.addr)
    }
}

impl Drop for TestPage {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_page_is_served_on_loopback_until_dropped() {
        let page = TestPage::start().await.unwrap();
        let url = page.url();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
        assert_eq!(body, PAGE);
        drop(page);
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(reqwest::get(&url).await.is_err());
    }
}
