//! `bbb-migrate serve`: the status page, its API and the metrics over HTTP, until SIGINT or
//! SIGTERM.

use std::net::SocketAddr;

use bbb_migrator::ledger::LedgerError;
use bbb_migrator::serve;

use super::*;

impl App {
    pub(super) async fn serve(&self, listen: SocketAddr, allow_actions: bool) -> Res<i32> {
        let only = self.s.ledger_selection("serve")?;
        let token = self.s.serve_token.clone();
        serve::check_listen(listen, token.as_ref()).map_err(usage)?;
        // Opened once here so that a ledger that cannot be read is exit 5 at once, not an
        // error on every request. A ledger of an older bbb-migrate first gets this version's
        // schema migrations (they add columns and tables, never change a job), so that the page
        // reads it right after an upgrade instead of waiting for the next claim.
        check_ledger_url(self.ledger_url())?;
        match AnyLedger::open_read_only(self.ledger_url(), Arc::new(SystemClock)).await {
            Ok(l) => l.close().await,
            Err(LedgerError::SchemaBehind(pending)) => {
                tracing::info!("serve: applying schema migration(s) {pending:?} to the ledger");
                self.ledger_write().await?.close().await;
                self.ledger_read_only().await?.close().await;
            }
            Err(e) => return Err(ledger_err(e)),
        }
        let listener = serve::bind(listen).await.map_err(usage)?;
        let at = listener
            .local_addr()
            .map_err(|e| usage(format!("serve: {e}")))?;
        // On stdout, for whoever started it with port 0 (a script, the tests).
        let _ = writeln!(out(), "listening on http://{at}/ (/api/status, /metrics)");
        tracing::info!("serve: listening on http://{at}/");
        let mut stop = interruption("serve: stopping");
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let options = serve::ServeOptions {
            ledger_url: self.s.ledger.url.clone(),
            policy: self.s.ledger.policy.clone(),
            only,
            token,
            actions: allow_actions,
        };
        serve::run(listener, options, shutdown)
            .await
            .map_err(|e| Fatal {
                code: exit::FAILED,
                message: format!("serve: {e}"),
            })?;
        Ok(exit::OK)
    }
}
